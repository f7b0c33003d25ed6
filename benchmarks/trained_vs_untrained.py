r"""A trained model against an untrained one, through both evaluators.

Evaluates two model folders of one config with `train.py --mode eval`, writing
each one's predictions on the evaluation split in the official formats
(`run_stage.results_dir`), then scores those files with the three official
cityscapesscripts evaluators and with `cityscapes_eval`, and prints PQ / AP /
mIoU per model and evaluator. The untrained model is the config's seeded
initialization (an empty model folder evaluates without restoring anything).

  PYTHONPATH=. python benchmarks/trained_vs_untrained.py \
      --gin_file gin/demo/teacher.gin --trained_dir runs/control2800 \
      --gt_root runs/synthetic_demo --output_dir /tmp/trained_vs_untrained
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import flags

from official_naive_student.evaluation import cityscapes_eval
from official_naive_student.evaluation import official_scripts

flags.DEFINE_multi_string('gin_file', ['gin/demo/teacher.gin'],
                          'Config the trained model was trained with.')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')
flags.DEFINE_string('trained_dir', None, 'Model folder with checkpoints.')
flags.DEFINE_string('gt_root', 'runs/synthetic_demo',
                    'Cityscapes-format root of the evaluation split.')
flags.DEFINE_string('split', 'val', 'gtFine split the config evaluates.')
flags.DEFINE_string('output_dir', None, 'Where results and the json go.')
flags.mark_flags_as_required(['trained_dir', 'output_dir'])
FLAGS = flags.FLAGS

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHOWN = ('PQ', 'PQ_things', 'PQ_stuff', 'AP', 'AP50', 'mIoU')


def write_results(model_dir: str, results_dir: str) -> None:
  """`train.py --mode eval` on `model_dir`, predictions into `results_dir`."""
  cmd = [sys.executable, os.path.join(_ROOT, 'train.py'), '--mode', 'eval',
         '--model_dir', model_dir,
         '--gin_bindings', f"run_stage.results_dir = '{results_dir}'"]
  for gin_file in FLAGS.gin_file:
    cmd += ['--gin_file', gin_file]
  for binding in FLAGS.gin_bindings:
    cmd += ['--gin_bindings', binding]
  subprocess.run(cmd, check=True, cwd=_ROOT)


def score(results_dir: str, work_dir: str) -> dict:
  files = dict(semantic_dir=os.path.join(results_dir, 'semantic'),
               instance_dir=os.path.join(results_dir, 'instance'),
               panoptic_json=os.path.join(results_dir, 'panoptic.json'),
               panoptic_dir=os.path.join(results_dir, 'panoptic'))
  official = official_scripts.metrics(official_scripts.run(
      FLAGS.gt_root, FLAGS.split, work_dir=work_dir, **files))
  ours = cityscapes_eval.evaluate(FLAGS.gt_root, FLAGS.split, **files)['metrics']
  return {'official': official, 'cityscapes_eval': ours}


def main(argv):
  del argv
  models = {'untrained': os.path.join(FLAGS.output_dir, 'untrained_model'),
            'trained': FLAGS.trained_dir}
  table = {}
  for name, model_dir in models.items():
    results_dir = os.path.join(FLAGS.output_dir, name, 'results')
    write_results(model_dir, results_dir)
    table[name] = score(results_dir, os.path.join(FLAGS.output_dir, name, 'work'))
  print(f'\n{"model":<10} {"evaluator":<16}' + ''.join(f'{k:>10}' for k in _SHOWN))
  for name, by_evaluator in table.items():
    for evaluator, metrics in by_evaluator.items():
      print(f'{name:<10} {evaluator:<16}' + ''.join(
          f'{metrics[k]:>10.2f}' for k in _SHOWN))
  out = os.path.join(FLAGS.output_dir, 'trained_vs_untrained.json')
  with open(out + '.tmp', 'w') as f:
    json.dump(table, f, indent=2)
  os.replace(out + '.tmp', out)
  print(f'wrote {out}')


if __name__ == '__main__':
  app.run(main)
