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
"""

import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Sequence

from absl import app
from absl import flags

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


def _train(model_dir: str, bindings: Sequence[str]) -> List[Dict]:
  command = [sys.executable, 'train.py', '--gin_file', _GIN_FILE.value,
             '--model_dir', model_dir]
  for binding in bindings:
    command += ['--gin_bindings', binding]
  print('+', ' '.join(command), flush=True)
  subprocess.run(command, check=True)
  with open(os.path.join(model_dir, loop.SUMMARY_FILE)) as f:
    return json.load(f)


def _row(rows: List[Dict], iteration: int, stage: str) -> Dict:
  for row in rows:
    if row['iteration'] == iteration and row['stage'] == stage:
      return row
  raise KeyError(f'no row ({iteration}, {stage!r}) in the summary')


def run_seed(seed: int, out: str, world: Sequence[str]) -> Dict[str, Dict]:
  """One seed's chain and oracle chain -> {row name: {PQ, mIoU}}."""
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
  results = {name: _row(rows, i, stage) for name, i, stage in ROWS}
  students = [('student', chain_dir, common)]
  plan = variant_plan(_ORACLE.value, _VARIANTS.value, _STUDENT_VARIANTS.value)
  for variant, stages in plan:
    name, bindings = variant.split('=', 1)
    variant_dir = os.path.join(out, f'seed{seed}_{name}')
    _link_stages(chain_dir, variant_dir, stages)
    variant_bindings = common + bindings.split(';') + [
        'run_naive_student.control_stage = None']
    rows = _train(variant_dir, variant_bindings)
    results[f'{name} (before fine-tuning)'] = _row(rows, 1, 'student')
    results[name] = _row(rows, 1, 'finetune')
    students.append((name, variant_dir, variant_bindings))
  for variant in _CONTROL_VARIANTS.value:
    name, bindings = variant.split('=', 1)
    target = os.path.join(out, f'seed{seed}_control_{name}')
    _link_stages(chain_dir, target, _CONTROL_REUSED_STAGES)
    rows = _train(target, common + bindings.split(';'))
    results[f'control {name}'] = _row(rows, 1, 'control')
  for variant in _FINETUNE_VARIANTS.value:
    suffix, bindings = variant.split('=', 1)
    for name, source, source_bindings in students:
      target = f'{source}_{suffix}'
      _link_stages(source, target, _REUSED_STAGES)
      rows = _train(target, source_bindings + bindings.split(';'))
      results[f'{name} {suffix}'] = _row(rows, 1, 'finetune')
      if source == chain_dir:
        results[f'control {suffix}'] = _row(rows, 1, 'control')
  return {name: {m: row[m] for m in METRICS} for name, row in results.items()}


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


def _link_stages(source: str, target: str, stages) -> None:
  """Links `source`'s finished stage folders into `target` (run there as is)."""
  os.makedirs(target, exist_ok=True)
  for iteration, stage in stages:
    origin = loop.stage_dir(source, iteration, stage)
    link = loop.stage_dir(target, iteration, stage)
    if os.path.exists(origin) and not os.path.lexists(link):
      os.symlink(os.path.realpath(origin), link)


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
    # A variant's rows are also set against its own control, if run.
    own = sorted({f'control {a}', f'control {a.split()[-1]}'} & set(names))
    for b in ['teacher', 'control'] + own:
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
  link = os.path.join(out, name)
  if not os.path.lexists(link):
    os.makedirs(out, exist_ok=True)
    os.symlink(os.path.realpath(source), link)


def main(_):
  if _TEACHER_STAGE.value != 'teacher' and not _TEACHERS_FROM.value:
    raise app.UsageError('--teacher_stage needs --teachers_from')
  out = _OUT.value
  world = world_bindings(_WORLD_SEED.value, out, _TEACHERS_FROM.value)
  carry_world(_WORLD_SEED.value, out, _TEACHERS_FROM.value)
  per_seed = {int(s): run_seed(int(s), out, world) for s in _SEEDS.value}
  table = format_table(per_seed)
  print(table)
  file_io.atomic_write_json(os.path.join(out, 'ssl_gain.json'), {
      'gin_file': _GIN_FILE.value, 'world_seed': _WORLD_SEED.value,
      'teachers_from': _TEACHERS_FROM.value,
      'teacher_stage': _TEACHER_STAGE.value, 'bindings': _BINDINGS.value,
      'variants': _VARIANTS.value, 'student_variants': _STUDENT_VARIANTS.value,
      'control_variants': _CONTROL_VARIANTS.value,
      'finetune_variants': _FINETUNE_VARIANTS.value, 'per_seed': per_seed},
      indent=1)


if __name__ == '__main__':
  app.run(main)
