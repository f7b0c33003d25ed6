"""Keeps the Bazel BUILD file in step with the code.

Every module of the package gets a `py_library`, every test file a `py_test` and
every entry point a `py_binary`; each target's `deps` are exactly the project
modules its file imports (third-party packages come from requirements.txt).
`python -m official_naive_student.tools.build_targets --write` regenerates BUILD;
`tests/build_test.py` fails when BUILD and the imports disagree.
"""

import argparse
import ast
import os
import sys
from typing import Dict, List, Optional, Set

from official_naive_student.core import file_io

PACKAGE = 'official_naive_student'
# Entry points outside the package (py_binary targets).
BINARY_DIRS = ('.', 'data', 'benchmarks')
HEADER = '''# Bazel targets, generated from the imports by
#   python -m official_naive_student.tools.build_targets --write
# and checked by tests/build_test.py. Third-party packages (tensorflow, keras, gin,
# absl, numpy, pillow, cityscapesscripts) come from requirements.txt; with
# rules_python, add their requirement() labels to the deps.

package(default_visibility = ["//visibility:public"])
'''


def target_name(rel_path: str) -> str:
  """'official_naive_student/core/trainer.py' -> 'core_trainer'; a package's
  __init__.py is named after its folder ('core')."""
  stem = rel_path[:-3]
  if stem.endswith('/__init__'):
    stem = stem[:-len('/__init__')]
  if stem == PACKAGE:
    return PACKAGE
  if stem.startswith(PACKAGE + '/'):
    stem = stem[len(PACKAGE) + 1:]
  return stem.replace('/', '_').replace('.', '_')


def _module_to_path(module: str, root: str) -> Optional[str]:
  rel = module.replace('.', '/')
  for candidate in (rel + '.py', rel + '/__init__.py'):
    if os.path.exists(os.path.join(root, candidate)):
      return candidate
  return None


def project_imports(path: str, root: str) -> Set[str]:
  """Relative paths of the project files that `path` imports."""
  with open(os.path.join(root, path)) as f:
    tree = ast.parse(f.read(), filename=path)
  found = set()
  for node in ast.walk(tree):
    modules = []
    if isinstance(node, ast.Import):
      modules = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      modules = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
    for module in modules:
      if module.split('.')[0] != PACKAGE:
        continue
      resolved = _module_to_path(module, root)
      if resolved and resolved != path:
        found.add(resolved)
  # `from pkg import module` also names pkg; keep only the most specific file.
  return {p for p in found
          if not (p.endswith('__init__.py') and
                  any(q != p and q.startswith(os.path.dirname(p) + '/')
                      for q in found))}


def python_files(root: str) -> Dict[str, List[str]]:
  """Library, test and binary files of the project, relative to `root`."""
  kinds = {'library': [], 'test': [], 'binary': []}
  for dirpath, dirnames, filenames in os.walk(os.path.join(root, PACKAGE)):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__')))
    for name in sorted(filenames):
      if name.endswith('.py'):
        kinds['library'].append(os.path.relpath(os.path.join(dirpath, name), root))
  for dirpath, dirnames, filenames in os.walk(os.path.join(root, 'tests')):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__')))
    for name in sorted(filenames):
      if name.endswith('_test.py'):
        kinds['test'].append(os.path.relpath(os.path.join(dirpath, name), root))
  for directory in BINARY_DIRS:
    full = os.path.join(root, directory)
    if os.path.isdir(full):
      for name in sorted(os.listdir(full)):
        if name.endswith('.py') and not name.startswith('_'):
          kinds['binary'].append(os.path.normpath(os.path.join(directory, name)))
  return kinds


def expected_targets(root: str) -> Dict[str, dict]:
  """target name -> {'rule', 'srcs', 'deps'} derived from the files' imports."""
  targets = {}
  for kind, files in python_files(root).items():
    for path in files:
      name = target_name(path)
      if kind == 'test':
        name = 'test_' + target_name(path[len('tests/'):])
      elif kind == 'binary':
        name = 'bin_' + name
      deps = sorted(':' + target_name(d) for d in project_imports(path, root))
      targets[name] = {'rule': 'py_' + kind, 'srcs': [path], 'deps': deps}
  return targets


def render(targets: Dict[str, dict]) -> str:
  lines = [HEADER]
  for name in sorted(targets, key=lambda n: (targets[n]['rule'], n)):
    t = targets[name]
    lines.append(f'{t["rule"]}(')
    lines.append(f'    name = "{name}",')
    lines.append(f'    srcs = ["{t["srcs"][0]}"],')
    if t['rule'] != 'py_library':
      lines.append(f'    main = "{t["srcs"][0]}",')
    if t['deps']:
      lines.append('    deps = [')
      lines.extend(f'        "{d}",' for d in t['deps'])
      lines.append('    ],')
    lines.append(')\n')
  return '\n'.join(lines)


def parse_build(text: str) -> Dict[str, dict]:
  """Reads the targets of a BUILD file by evaluating its Starlark as Python."""
  targets = {}

  def rule(kind):
    def add(name, srcs=(), deps=(), **unused_kwargs):
      targets[name] = {'rule': kind, 'srcs': list(srcs), 'deps': sorted(deps)}
    return add

  env = {'py_library': rule('py_library'), 'py_test': rule('py_test'),
         'py_binary': rule('py_binary'), 'package': lambda **kw: None,
         'load': lambda *a: None}
  exec(compile(text, 'BUILD', 'exec'), env)  # pylint: disable=exec-used
  return targets


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--root', default=os.getcwd())
  parser.add_argument('--write', action='store_true',
                      help='regenerate BUILD instead of checking it')
  args = parser.parse_args(argv)
  build_path = os.path.join(args.root, 'BUILD')
  text = render(expected_targets(args.root))
  if args.write:
    file_io.atomic_write_text(build_path, text)
    return 0
  with open(build_path) as f:
    current = parse_build(f.read())
  if current != expected_targets(args.root):
    print('BUILD is out of date: run python -m '
          'official_naive_student.tools.build_targets --write', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
