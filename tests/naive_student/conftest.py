"""Checks shared by the chain tests (demo and CamVid configs), and the data,
Teacher and labels that the pseudo-label tests share (`setup`)."""

import functools
import json
import os

import gin
import pytest

from official_naive_student.core import inference
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders.synthetic import writer
from official_naive_student.modeling import presets
from official_naive_student.naive_student import loop
from official_naive_student.naive_student import pseudo_labeling as pls
from official_naive_student.tasks import panoptic_deeplab as task_lib

SUMMARY_KEYS = {'iteration', 'stage', 'network', 'PQ', 'AP', 'mIoU',
                'checkpoint'}


def _check_one_iteration_summary(rows, model_dir, control=False):
  """Stage order, summary.json, required keys, and each stage's checkpoint."""
  assert [(r['iteration'], r['stage']) for r in rows] == [
      (0, 'teacher'), (1, 'pseudo_label'), (1, 'student'), (1, 'finetune')
  ] + [(1, 'control')] * control
  with open(os.path.join(model_dir, loop.SUMMARY_FILE)) as f:
    assert json.load(f) == rows
  for row in rows:
    assert SUMMARY_KEYS <= set(row)
    if row['stage'] == 'pseudo_label':
      assert row['checkpoint'] is None and row['AP'] is None
    else:
      assert 0 <= row['mIoU'] <= 100 and 0 <= row['PQ'] <= 100
      assert os.path.exists(
          os.path.join(model_dir, row['checkpoint']) + '.index')


@pytest.fixture
def check_one_iteration_summary():
  return _check_one_iteration_summary


# Configurables that shipped files bind for a documented switch that is off by
# default (`label_and_measure.label_fn = @oracle_labels`, the oracle ablation).
OFF_BY_DEFAULT = ('oracle_labels',)


def _unused_bindings(off_by_default=OFF_BY_DEFAULT):
  """Bindings of the parsed config that no call has read since it was parsed.

  A binding `a/b/Name.param` is read by a call of Name whose scope holds a
  and b (gin's rule for scoped bindings) and whose operative entry has param.
  """
  # pylint: disable=protected-access
  calls = {}
  for (scope, selector), params in gin.config._OPERATIVE_CONFIG.items():
    calls.setdefault(selector, []).append(
        (set(scope.split('/')) - {''}, set(params)))
  unused = []
  for (scope, selector), params in gin.config._CONFIG.items():
    if selector.split('.')[-1] in off_by_default:
      continue
    wanted = set(scope.split('/')) - {''}
    for param in params:
      if not any(wanted <= s and param in p for s, p in calls.get(selector, ())):
        unused.append(f'{scope}/{selector}.{param}' if scope
                      else f'{selector}.{param}')
  return sorted(unused)


@pytest.fixture
def check_every_binding_used():
  """Fails naming each binding of the parsed gin files that nothing read."""
  def check():
    unused = _unused_bindings()
    assert not unused, f'bindings that no code read (silently ignored): {unused}'
  return check


H, W = 64, 128  # Frames of the pseudo-label tests' video (`setup`).


def _task():
  return task_lib.PanopticDeepLabTask(model_fn=functools.partial(
      presets.build_panoptic_deeplab, preset='tiny'))


@pytest.fixture(scope='session')
def setup(tmp_path_factory):
  """Pseudo-label tests' data: a 2-snippet video of H x W frames, a randomly
  initialized Teacher checkpoint and one full labeling run."""
  base = tmp_path_factory.mktemp('pseudo')
  root = str(base / 'data')
  writer.make_synthetic_cityscapes(
      root, 2, seed=0, height=H, width=W, frames_per_sequence=10,
      labeled_frame=7, split_sizes={'train': 2, 'val': 0}, num_workers=1)
  teacher_dir = str(base / 'teacher')
  trainer = trainer_lib.Trainer(_task(), teacher_dir, num_steps=1)
  trainer.manager.save(checkpoint_number=0)
  records = cf.find_records(root, 'train-sequence')
  full = str(base / 'full')
  assert pls.pseudo_label(teacher_dir, full, records, task=_task(),
                          batch_size=4) == full
  # Plain inference (no TTA) of the same Teacher, for comparisons.
  task = _task()
  model = task.build_model()
  inference.restore_model(model, teacher_dir)
  plain = inference.make_inference_fn(model, task.build_post_processor())
  tta_infer = inference.make_inference_fn(model, task.build_post_processor(),
                                          inference.make_tta_fn((1.0,), False))
  return dict(base=base, root=root, teacher_dir=teacher_dir, records=records,
              full=full, model=model, plain=plain, tta_infer=tta_infer)
