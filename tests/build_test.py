"""BUILD has a target for every module, test and entry point, with deps = imports."""

import os

from official_naive_student.tools import build_targets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_file_matches_imports():
  with open(os.path.join(ROOT, 'BUILD')) as f:
    current = build_targets.parse_build(f.read())
  expected = build_targets.expected_targets(ROOT)
  missing = sorted(set(expected) - set(current))
  stale = sorted(set(current) - set(expected))
  assert not missing, f'targets missing from BUILD: {missing}'
  assert not stale, f'BUILD targets without a file: {stale}'
  wrong = {n: (current[n], expected[n]) for n in expected
           if current[n] != expected[n]}
  assert not wrong, f'BUILD targets whose srcs/deps differ from imports: {wrong}'


def test_imports_are_found(tmp_path):
  pkg = tmp_path / 'official_naive_student'
  (pkg / 'sub').mkdir(parents=True)
  (pkg / '__init__.py').write_text('')
  (pkg / 'sub' / '__init__.py').write_text('')
  (pkg / 'sub' / 'a.py').write_text('X = 1\n')
  (pkg / 'b.py').write_text(
      'from official_naive_student.sub import a\nimport numpy\n')
  deps = build_targets.project_imports('official_naive_student/b.py', str(tmp_path))
  assert deps == {'official_naive_student/sub/a.py'}
  targets = build_targets.expected_targets(str(tmp_path))
  assert targets['b']['deps'] == [':sub_a']
  # A BUILD rendered from the tree parses back to the same targets.
  assert build_targets.parse_build(build_targets.render(targets)) == targets
