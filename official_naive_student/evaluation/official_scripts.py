r"""Runs the three official cityscapesscripts evaluators on result files.

The reference that `cityscapes_eval` must equal, as a library call and a
command with the same flags and JSON keys, so that one model's numbers can be
read side by side through both (`benchmarks/trained_vs_untrained.py`):

  python -m official_naive_student.evaluation.official_scripts \
      --gt_root /data/cityscapes --split val --semantic_dir results/semantic \
      --instance_dir results/instance --panoptic_json results/panoptic.json \
      --panoptic_dir results/panoptic --output_json results/official.json

Each evaluator runs unmodified in its own process (they keep module-level
state); only their settings are pointed at the given split and at a private
work folder: the instance evaluator otherwise caches the gt instances next to
its own source file, where a cache of another dataset would be read silently.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, Optional

from official_naive_student.evaluation import cityscapes_eval

RESULT_KEYS = cityscapes_eval.RESULT_KEYS
PIXEL, INSTANCE, PANOPTIC = 'pixel', 'instance', 'panoptic'
_PACKAGE = 'cityscapesscripts.evaluation.'


def _search(gt_root: str, split: str, suffix: str) -> str:
  return os.path.join(gt_root, 'gtFine', split, '*', f'*_gtFine_{suffix}.png')


def _settings_script(module: str, **args: str) -> str:
  """`python -c` text: set the module's `args` fields, then run its main()."""
  sets = ''.join(f'm.args.{k} = {v!r}; ' for k, v in args.items())
  return f'import {_PACKAGE}{module} as m; {sets}m.main()'


def commands(gt_root: str, split: str, work_dir: str,
             semantic_dir: Optional[str] = None,
             instance_dir: Optional[str] = None,
             panoptic_json: Optional[str] = None,
             panoptic_dir: Optional[str] = None) -> Dict[str, tuple]:
  """{kind: (argv, env, result json path)} of the evaluators the inputs allow.

  Paths are made absolute: the evaluators run in `work_dir`.
  """
  gt_root, work_dir = os.path.abspath(gt_root), os.path.abspath(work_dir)
  semantic_dir, instance_dir, panoptic_json, panoptic_dir = (
      p and os.path.abspath(p) for p in (semantic_dir, instance_dir,
                                         panoptic_json, panoptic_dir))
  env = dict(os.environ, CITYSCAPES_DATASET=gt_root,
             CITYSCAPES_EXPORT_DIR=work_dir)
  jobs = {}
  if semantic_dir:
    out = os.path.join(work_dir, 'resultPixelLevelSemanticLabeling.json')
    jobs[PIXEL] = ([sys.executable, '-c', _settings_script(
        'evalPixelLevelSemanticLabeling',
        groundTruthSearch=_search(gt_root, split, 'labelIds'),
        predictionPath=semantic_dir, exportFile=out)],
                   env, out)
  if instance_dir:
    out = os.path.join(work_dir, 'resultInstanceLevelSemanticLabeling.json')
    jobs[INSTANCE] = ([sys.executable, '-c', _settings_script(
        'evalInstanceLevelSemanticLabeling',
        groundTruthSearch=_search(gt_root, split, 'instanceIds'),
        predictionPath=instance_dir, exportFile=out,
        gtInstancesFile=os.path.join(work_dir, 'gtInstances.json'))],
                      dict(env, CITYSCAPES_RESULTS=instance_dir),
                      out)
  if panoptic_json:
    if not panoptic_dir:
      raise ValueError('panoptic_json needs panoptic_dir (its PNG folder)')
    out = os.path.join(work_dir, 'resultPanopticSemanticLabeling.json')
    jobs[PANOPTIC] = ([
        sys.executable, '-m', _PACKAGE + 'evalPanopticSemanticLabeling',
        '--gt-json-file', os.path.join(
            gt_root, 'gtFine', f'cityscapes_panoptic_{split}.json'),
        '--gt-folder', os.path.join(gt_root, 'gtFine',
                                    f'cityscapes_panoptic_{split}'),
        '--prediction-json-file', panoptic_json,
        '--prediction-folder', panoptic_dir, '--results_file', out], env, out)
  return jobs


def run(gt_root: str, split: str = 'val', semantic_dir: Optional[str] = None,
        instance_dir: Optional[str] = None, panoptic_json: Optional[str] = None,
        panoptic_dir: Optional[str] = None, work_dir: Optional[str] = None,
        timeout: float = 3600.0) -> Dict[str, dict]:
  """Runs the evaluators at once; returns {kind: the evaluator's own json}.

  Raises:
    FileNotFoundError: `gt_root` has no gtFine/<split>.
    RuntimeError: an evaluator failed (its output's tail is in the message).
  """
  if not os.path.isdir(os.path.join(gt_root, 'gtFine', split)):
    raise FileNotFoundError(f'{gt_root}: no gtFine/{split} folder')
  work_dir = work_dir or tempfile.mkdtemp(prefix='official_eval_')
  os.makedirs(work_dir, exist_ok=True)
  jobs = commands(gt_root, split, work_dir, semantic_dir, instance_dir,
                  panoptic_json, panoptic_dir)
  procs = {kind: subprocess.Popen(argv, env=env, cwd=work_dir,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
           for kind, (argv, env, _) in jobs.items()}
  results = {}
  for kind, proc in procs.items():
    output = proc.communicate(timeout=timeout)[0].decode(errors='replace')
    if proc.returncode != 0:
      raise RuntimeError(f'official {kind} evaluator failed '
                         f'(exit {proc.returncode}):\n{output[-3000:]}')
    with open(jobs[kind][2]) as f:
      results[kind] = json.load(f)
  return results


def metrics(results: Dict[str, dict]) -> Dict[str, Optional[float]]:
  """The evaluators' jsons -> RESULT_KEYS in percent (None: not evaluated)."""
  out = {key: None for key in RESULT_KEYS}
  if PIXEL in results:
    out['mIoU'] = results[PIXEL]['averageScoreClasses'] * 100
  if INSTANCE in results:
    averages = results[INSTANCE]['averages']
    out['AP'] = averages['allAp'] * 100
    out['AP50'] = averages['allAp50%'] * 100
  if PANOPTIC in results:
    pan = results[PANOPTIC]
    out.update(PQ=pan['All']['pq'] * 100, SQ=pan['All']['sq'] * 100,
               RQ=pan['All']['rq'] * 100, PQ_things=pan['Things']['pq'] * 100,
               PQ_stuff=pan['Stuff']['pq'] * 100)
  return out


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  cityscapes_eval.define_result_file_flags()
  flags.DEFINE_string('work_dir', None, 'Folder for the evaluators\' own files.')
  FLAGS = flags.FLAGS

  def main(argv):
    del argv
    scores = metrics(run(FLAGS.gt_root, FLAGS.split, FLAGS.semantic_dir,
                         FLAGS.instance_dir, FLAGS.panoptic_json,
                         FLAGS.panoptic_dir, FLAGS.work_dir))
    print('  '.join(f'{k} {v:.2f}' if v is not None else f'{k} -'
                    for k, v in scores.items()))
    if FLAGS.output_json:
      cityscapes_eval.write_metrics_json(FLAGS.output_json, scores)

  app.run(main)
