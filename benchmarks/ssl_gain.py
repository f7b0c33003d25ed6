"""Does the Student beat its Teacher and the same compute on human labels? Over seeds.

For each seed, one Naive-Student iteration of a chain config (default: the demo)
with its supervised control on, and, from the same Teacher, the oracle ablation
and any --variant (e.g. confidence-masked labels) or --student_variant (e.g.
a strongly augmented Student on the same labels, with --control_variant its
control given the same augmentation):

  teacher    supervised on the human labels (iteration 0)
  control    the Student's start, steps and schedules on the human labels only
  student    trained on the Teacher's pseudo-labels, then fine-tuned (the method)
  oracle     the same, on the true labels of the same frames (the ceiling)

The seed sets weight initialization, dropout and the input pipelines' shuffles
and augmentation (`Trainer.seed`, `InputPipeline.seed`); the world (the synthetic
dataset) is fixed by --world_seed. It prints mean and sample standard deviation
of PQ and mIoU per row, and of the paired differences (student - teacher,
student - control) over seeds. A difference within its spread is not a result.

  PYTHONPATH=. python benchmarks/ssl_gain.py --seeds 0,1,2 --out runs/ssl_gain

Each run is a resumable chain under --out: re-running skips finished stages.
--teachers_from reuses the Teachers of an earlier --out, e.g. to compare
Students and controls of another length from the same start; with --world_seed
it also reuses that --out's world, the data those Teachers learnt from, and
links it into the new --out, so that chains of --teachers_from runs share one
world.
--teacher_stage control takes those chains' fine-tuned controls as Teachers
instead: Teachers with more supervised steps, nearer their plateau.
--rescore_root also scores every row on a larger val split of the same world
(30 val frames, the demo's before it had 150, hold few instances), from
the same checkpoints.
A variant's binding that no stage it trained used fails the run by name.
"""

import glob
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Sequence

from absl import app
from absl import flags
from absl import logging

from official_naive_student.core import file_io
from official_naive_student.naive_student import loop

_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Training seeds.')
_OUT = flags.DEFINE_string('out', 'runs/ssl_gain', 'Folder of the runs.')
_GIN_FILE = flags.DEFINE_string('gin_file', 'gin/demo/naive_student.gin',
                                'Chain config (its control_stage is used).')
_WORLD_SEED = flags.DEFINE_integer(
    'world_seed', None, 'Generator seed of the synthetic world (None: the '
    "config's); its data goes to <out>/world<seed>, or is read from "
    '<teachers_from>/world<seed>.')
_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [],
                                      'Extra bindings for every run.')
_ORACLE = flags.DEFINE_bool('oracle', True, 'Also run the oracle Student.')
_TEACHERS_FROM = flags.DEFINE_string(
    'teachers_from', None, 'An earlier --out whose seed<N> Teachers this run '
    'reuses (linked, not retrained): Students and controls of another '
    'schedule from the same Teachers.')
_TEACHER_STAGE = flags.DEFINE_enum(
    'teacher_stage', 'teacher', ['teacher', 'control'],
    'The stage of the --teachers_from chains that is the Teacher here: '
    "'teacher' (iteration 0's) or 'control' (iteration 1's fine-tuned "
    'control, adopted: a Teacher with the supervised steps of both).')
_VARIANTS = flags.DEFINE_multi_string(
    'variant', [], 'NAME=BINDING[;BINDING...]: another Student from the same '
    'Teacher with these bindings, e.g. '
    '"confident=pseudo_label.confidence_threshold = 0.7".')
_STUDENT_VARIANTS = flags.DEFINE_multi_string(
    'student_variant', [], 'NAME=BINDING[;BINDING...]: another Student from '
    'the same Teacher and the same pseudo-labels (linked, not made again), '
    'for bindings of the Student and its fine-tuning only, e.g. '
    '"strong=pseudo/InputPipeline.strong_augment = True".')
_CONTROL_VARIANTS = flags.DEFINE_multi_string(
    'control_variant', [], 'NAME=BINDING[;BINDING...]: the control trained '
    'again with these bindings (the rest of the chain linked), row "control '
    'NAME", against which the row NAME is also set: the control of a '
    'Student variant, e.g. "strong=control/PanopticDeepLabTask.train_data = '
    '@strong/InputPipeline;strong/InputPipeline.strong_augment = True;..." '
    '(the control shares labeled/InputPipeline with the Teacher and the '
    'fine-tuning, so it gets a pipeline of its own).')
_FINETUNE_VARIANTS = flags.DEFINE_multi_string(
    'finetune_variant', [], 'NAME=BINDING[;BINDING...]: the same Students '
    '(and control Student) fine-tuned again with these bindings, in '
    '<run>_NAME folders that link the finished stages; rows "<row> NAME", '
    'e.g. "ft5e4=finetune/Trainer.learning_rate = 0.0005".')
_RESCORE_ROOT = flags.DEFINE_string(
    'rescore_root', None, 'A dataset root of the same world with more val '
    'snippets (generated with the same seed and train split, e.g. '
    'split_sizes {"train": 14, "val": 150}): every row\'s checkpoint is also '
    'evaluated on its val-fine frames (cached under <out>/rescored_<name>) '
    'and a second table is printed from those scores.')
# The stages a fine-tuning variant reuses (linked, not rerun).
_REUSED_STAGES = ((0, 'teacher'), (1, 'pseudo_label'), (1, 'student'),
                  (1, 'control_student'))
# The stages a control variant reuses.
_CONTROL_REUSED_STAGES = ((0, 'teacher'), (1, 'pseudo_label'), (1, 'student'),
                          (1, 'finetune'))

ROWS = (('teacher', 0, 'teacher'), ('control', 1, 'control'),
        ('student (before fine-tuning)', 1, 'student'),
        ('student', 1, 'finetune'))
ORACLE = 'oracle=label_and_measure.label_fn = @oracle_labels'
METRICS = ('PQ', 'mIoU')


def _run_train_py(model_dir: str, bindings: Sequence[str],
                  extra_args: Sequence[str] = ()) -> None:
  command = [sys.executable, 'train.py', '--gin_file', _GIN_FILE.value,
             '--model_dir', model_dir, *extra_args]
  for binding in bindings:
    command += ['--gin_bindings', binding]
  print('+', ' '.join(command), flush=True)
  subprocess.run(command, check=True)


def _train(model_dir: str, bindings: Sequence[str]) -> List[Dict]:
  _run_train_py(model_dir, bindings)
  with open(os.path.join(model_dir, loop.SUMMARY_FILE)) as f:
    return json.load(f)


def _row(rows: List[Dict], iteration: int, stage: str) -> Dict:
  for row in rows:
    if row['iteration'] == iteration and row['stage'] == stage:
      return row
  raise KeyError(f'no row ({iteration}, {stage!r}) in the summary')


def run_seed(seed: int, out: str, world: Sequence[str]):
  """One seed's chain and variants -> ({row name: {PQ, mIoU}}, the same
  rescored on --rescore_root or None)."""
  common = [f'Trainer.seed = {seed}', f'InputPipeline.seed = {seed}',
            'run_naive_student.num_iterations = 1', *world,
            *_BINDINGS.value]
  chain_dir = os.path.join(out, f'seed{seed}')
  if _TEACHERS_FROM.value:
    source = os.path.join(_TEACHERS_FROM.value, f'seed{seed}')
    if _TEACHER_STAGE.value == 'control':
      loop.adopt_teacher(loop.stage_dir(source, 1, 'control'), chain_dir)
    elif not os.path.exists(loop.stage_dir(source, 0, 'teacher')):
      raise FileNotFoundError(f'--teachers_from: no Teacher in {source}')
    else:
      _link_stages(source, chain_dir, [(0, 'teacher')])
  rows = _train(chain_dir, common)
  results = {name: (_row(rows, i, stage), chain_dir) for name, i, stage in ROWS}
  students = [('student', chain_dir, common)]
  plan = variant_plan(_ORACLE.value, _VARIANTS.value, _STUDENT_VARIANTS.value)
  for variant, stages in plan:
    name, bindings = _split_variant(variant)
    variant_dir = os.path.join(out, f'seed{seed}_{name}')
    _link_stages(chain_dir, variant_dir, stages)
    variant_bindings = common + bindings + [
        'run_naive_student.control_stage = None']
    rows = _train(variant_dir, variant_bindings)
    if (1, 'pseudo_label') in stages:  # Labeling writes no operative config.
      _require_reached(variant_dir, bindings, [(1, 'student'), (1, 'finetune')])
    results[f'{name} (before fine-tuning)'] = (_row(rows, 1, 'student'),
                                               variant_dir)
    results[name] = (_row(rows, 1, 'finetune'), variant_dir)
    students.append((name, variant_dir, variant_bindings))
  for variant in _CONTROL_VARIANTS.value:
    name, bindings = _split_variant(variant)
    target = os.path.join(out, f'seed{seed}_control_{name}')
    _link_stages(chain_dir, target, _CONTROL_REUSED_STAGES)
    rows = _train(target, common + bindings)
    _require_reached(target, bindings, [(1, 'control_student'), (1, 'control')])
    results[f'control {name}'] = (_row(rows, 1, 'control'), target)
  for variant in _FINETUNE_VARIANTS.value:
    suffix, bindings = _split_variant(variant)
    for name, source, source_bindings in students:
      target = f'{source}_{suffix}'
      _link_stages(source, target, _REUSED_STAGES)
      rows = _train(target, source_bindings + bindings)
      _require_reached(target, bindings, [(1, 'finetune'), (1, 'control')])
      results[f'{name} {suffix}'] = (_row(rows, 1, 'finetune'), target)
      if source == chain_dir:
        results[f'control {suffix}'] = (_row(rows, 1, 'control'), target)
  scores = {name: {m: row[m] for m in METRICS}
            for name, (row, _) in results.items()}
  if not _RESCORE_ROOT.value:
    return scores, None
  scratch = os.path.join(out, 'rescored_' + os.path.basename(
      os.path.normpath(_RESCORE_ROOT.value)))
  return scores, {name: rescore(row, directory, scratch, _RESCORE_ROOT.value,
                                common)
                  for name, (row, directory) in results.items()}


def rescore(row: Dict, model_dir: str, scratch: str, root: str,
            bindings: Sequence[str]) -> Dict[str, float]:
  """`row`'s checkpoint evaluated on `root`'s val-fine -> {PQ, mIoU}.

  The checkpoint is linked into a folder of its own under `scratch` (kept, so
  a re-run reads its eval_results.json) and scored by `train.py --mode eval`
  with the chain's bindings; rows must share the Teacher's network.
  """
  prefix = os.path.join(model_dir, row['checkpoint'])
  step = int(prefix.rsplit('-', 1)[1])
  name = os.path.basename(os.path.normpath(model_dir))
  target = os.path.join(scratch, f"{name}_{row['iteration']}_{row['stage']}")
  results = os.path.join(target, 'eval_results.json')
  if not os.path.exists(results):
    checkpoints = os.path.join(target, 'checkpoints')
    os.makedirs(checkpoints, exist_ok=True)
    for path in glob.glob(glob.escape(prefix) + '.*'):
      link = os.path.join(checkpoints, os.path.basename(path))
      if not os.path.lexists(link):
        os.symlink(os.path.realpath(path), link)
    file_io.atomic_write_bytes(
        os.path.join(checkpoints, 'checkpoint'),
        f'model_checkpoint_path: "{os.path.basename(prefix)}"\n'.encode())
    _run_train_py(target, [*bindings, 'run_experiment.experiment_fn = @run_stage',
                           f"eval/find_records.cityscapes_root = '{root}'"],
                  ['--mode', 'eval'])
  with open(results) as f:
    metrics = json.load(f)
  if metrics['step'] != step:
    raise ValueError(f'{results}: scored step {metrics["step"]}, not {prefix}; '
                     f'delete {target} to score the row again')
  return {m: metrics[m] for m in METRICS}


def _split_variant(variant: str):
  """'NAME=BINDING[;BINDING...]' -> (NAME, [BINDING, ...])."""
  name, bindings = variant.split('=', 1)
  return name, bindings.split(';')


def unreached_bindings(bindings: Sequence[str],
                       operative_configs: Sequence[str]) -> List[str]:
  """The bindings whose name no operative config lists.

  Gin accepts a binding for any scope, e.g. `control/labeled/InputPipeline.x`,
  and silently ignores it if no configurable is called in that scope; the
  operative config lists what was used, so a name missing from it took no
  effect and a variant row would silently equal the plain one. Gin applies a
  binding wherever its scope is a prefix of the active one, and lists the
  active one (`student/mix_pseudo_labels.shares` for `mix_pseudo_labels.shares`,
  `student/inner/X.p` for `student/X.p`): such a name counts when the listed
  value is the binding's, else a deeper binding overrode it there.
  """
  used = {}
  for text in operative_configs:
    for line in text.replace('\\\n', ' ').splitlines():
      if '=' in line and line[:1] not in ('#', ' ', '\t'):
        name, value = line.split('=', 1)
        used.setdefault(name.strip(), set()).add(''.join(value.split()))

  def scopes_and_selector(name):
    scope, _, selector = name.rpartition('/')
    return (scope.split('/') if scope else []), selector

  def reached(binding):
    name, value = (part.strip() for part in binding.split('=', 1))
    if name in used:
      return True
    scopes, selector = scopes_and_selector(name)
    value = ''.join(value.split())
    for listed, values in used.items():
      listed_scopes, listed_selector = scopes_and_selector(listed)
      if (listed_selector == selector and value in values
          and listed_scopes[:len(scopes)] == scopes):
        return True
    return False

  return [b for b in bindings if not reached(b)]


def _require_reached(model_dir: str, bindings: Sequence[str], stages) -> None:
  """Raises if a variant's binding reached none of the stages it trained."""
  configs = []
  for iteration, stage in stages:
    path = os.path.join(loop.stage_dir(model_dir, iteration, stage),
                        'operative_config.gin')
    if os.path.exists(path):
      with open(path) as f:
        configs.append(f.read())
  unreached = unreached_bindings(bindings, configs)
  if unreached:
    raise ValueError(f'{model_dir}: gin accepted but no stage used '
                     f'{unreached}; fix the scope or the name.')


def variant_plan(oracle: bool, variants: Sequence[str],
                 student_variants: Sequence[str]) -> List:
  """[(NAME=BINDINGS, the chain's stages it reuses)], in the order run.

  Every variant reuses the Teacher; a Student variant also its pseudo-labels,
  so that only the Student differs from the chain's.
  """
  teacher = [(0, 'teacher')]
  labels = teacher + [(1, 'pseudo_label')]
  return ([(v, teacher) for v in ([ORACLE] if oracle else []) + list(variants)]
          + [(v, labels) for v in student_variants])


def _link(origin: str, link: str) -> None:
  """Links `origin` at `link` by a relative path, so that a moved --out keeps
  its links; a link left dangling by an earlier move is pointed at `origin`.
  """
  if os.path.lexists(link):
    if os.path.exists(link):
      return
    logging.warning('%s pointed at the missing %s; relinked to %s', link,
                    os.readlink(link), origin)
    os.remove(link)
  os.makedirs(os.path.dirname(link), exist_ok=True)
  file_io.relative_symlink(origin, link)


def _link_stages(source: str, target: str, stages) -> None:
  """Links `source`'s finished stage folders into `target` (run there as is)."""
  os.makedirs(target, exist_ok=True)
  for iteration, stage in stages:
    origin = loop.stage_dir(source, iteration, stage)
    if os.path.exists(origin):
      _link(origin, loop.stage_dir(target, iteration, stage))


def _mean_std(values: Sequence[float]) -> str:
  spread = statistics.stdev(values) if len(values) > 1 else float('nan')
  return f'{statistics.mean(values):6.2f} +- {spread:4.2f}'


def format_table(per_seed: Dict[int, Dict[str, Dict]]) -> str:
  """Mean +- sample std over seeds of each row and of the paired gains."""
  seeds = sorted(per_seed)
  names = list(per_seed[seeds[0]])
  lines = [f'{len(seeds)} seeds: {seeds}',
           f'{"row":<30}' + ''.join(f'{m:>18}' for m in METRICS)]
  for name in names:
    lines.append(f'{name:<30}' + ''.join(
        f'{_mean_std([per_seed[s][name][m] for s in seeds]):>18}'
        for m in METRICS))
  for a in names:
    if a in ('teacher', 'control') or '(' in a or a.startswith('control '):
      continue
    # A variant's rows are also set against the paper's Student (did the
    # switch pay?) and against its own control, if run.
    paper = ['student'] if a != 'student' and 'student' in names else []
    own = sorted({f'control {a}', f'control {a.split()[-1]}'} & set(names))
    for b in ['teacher', 'control'] + paper + own:
      lines.append(f'{a + " - " + b:<30}' + ''.join(
          f'{_mean_std([per_seed[s][a][m] - per_seed[s][b][m] for s in seeds]):>18}'
          for m in METRICS))
  return '\n'.join(lines)


def world_bindings(world_seed, out: str, teachers_from=None) -> List[str]:
  """Bindings of the synthetic world of `world_seed` (none: the config's).

  Reused Teachers come with their world: it is read from `teachers_from`,
  not generated again under `out`.
  """
  if world_seed is None:
    return []
  root = os.path.join(teachers_from or out, f'world{world_seed}')
  return [f'ensure_synthetic_cityscapes.seed = {world_seed}',
          f"ensure_synthetic_cityscapes.out_dir = '{root}'"]


def carry_world(world_seed, out: str, teachers_from) -> None:
  """Links the reused world into `out`, so a run from `out`'s chains finds it.

  Without it each `--teachers_from` hop past the first would generate the
  world again under the earlier run's folder.
  """
  if world_seed is None or not teachers_from:
    return
  name = f'world{world_seed}'
  source = os.path.join(teachers_from, name)
  if not os.path.isdir(source):
    raise FileNotFoundError(f'--teachers_from: no {source}, the world its '
                            'Teachers learnt from')
  _link(source, os.path.join(out, name))


def main(_):
  if _TEACHER_STAGE.value != 'teacher' and not _TEACHERS_FROM.value:
    raise app.UsageError('--teacher_stage needs --teachers_from')
  out = _OUT.value
  world = world_bindings(_WORLD_SEED.value, out, _TEACHERS_FROM.value)
  carry_world(_WORLD_SEED.value, out, _TEACHERS_FROM.value)
  runs = {int(s): run_seed(int(s), out, world) for s in _SEEDS.value}
  per_seed = {s: scores for s, (scores, _) in runs.items()}
  print(format_table(per_seed))
  rescored = None
  if _RESCORE_ROOT.value:
    rescored = {s: scores for s, (_, scores) in runs.items()}
    print(f'\nRescored on the val-fine frames of {_RESCORE_ROOT.value}:')
    print(format_table(rescored))
  file_io.atomic_write_json(os.path.join(out, 'ssl_gain.json'), {
      'gin_file': _GIN_FILE.value, 'world_seed': _WORLD_SEED.value,
      'teachers_from': _TEACHERS_FROM.value,
      'teacher_stage': _TEACHER_STAGE.value, 'bindings': _BINDINGS.value,
      'variants': _VARIANTS.value, 'student_variants': _STUDENT_VARIANTS.value,
      'control_variants': _CONTROL_VARIANTS.value,
      'finetune_variants': _FINETUNE_VARIANTS.value, 'per_seed': per_seed,
      'rescore_root': _RESCORE_ROOT.value, 'per_seed_rescored': rescored},
      indent=1)


if __name__ == '__main__':
  app.run(main)
