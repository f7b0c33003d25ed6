"""Checks shared by the chain tests (demo and CamVid configs)."""

import json
import os

import gin
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
