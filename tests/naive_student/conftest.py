"""Checks shared by the chain tests (demo and CamVid configs)."""

import json
import os

import pytest

from official_naive_student.naive_student import loop

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
