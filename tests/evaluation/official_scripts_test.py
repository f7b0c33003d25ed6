"""The official-evaluator runner as a library (its command: cityscapes_eval_test)."""

import pytest

from official_naive_student.evaluation import official_scripts


def test_only_given_kinds_and_missing_split(official_case, tmp_path):
  semantic_only = official_scripts.metrics(official_scripts.run(
      official_case['root'], 'val', semantic_dir=official_case['semantic_dir'],
      work_dir=str(tmp_path)))
  assert semantic_only['mIoU'] is not None
  assert semantic_only['PQ'] is None and semantic_only['AP'] is None
  with pytest.raises(FileNotFoundError, match='gtFine/train'):
    official_scripts.run(official_case['root'], 'train',
                         semantic_dir=official_case['semantic_dir'])
