"""The official-evaluator runner: its command writes the reference metrics."""

import json
import os
import subprocess
import sys

import pytest

from official_naive_student.evaluation import official_scripts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_command_line_writes_the_official_metrics(official_case, tmp_path):
  out = tmp_path / 'official.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'official_naive_student.evaluation.official_scripts',
       '--gt_root', official_case['root'], '--split', 'val',
       '--semantic_dir', official_case['semantic_dir'],
       '--instance_dir', official_case['instance_dir'],
       '--panoptic_json', official_case['panoptic_json'],
       '--panoptic_dir', official_case['panoptic_dir'],
       '--work_dir', str(tmp_path / 'work'), '--output_json', str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.load(open(out))
  assert metrics == pytest.approx(
      official_scripts.metrics(official_case['official']), abs=1e-9)
  assert metrics['AP'] > 0 and metrics['PQ'] > 0 and metrics['mIoU'] > 0


def test_only_given_kinds_and_missing_split(official_case, tmp_path):
  semantic_only = official_scripts.metrics(official_scripts.run(
      official_case['root'], 'val', semantic_dir=official_case['semantic_dir'],
      work_dir=str(tmp_path)))
  assert semantic_only['mIoU'] is not None
  assert semantic_only['PQ'] is None and semantic_only['AP'] is None
  with pytest.raises(FileNotFoundError, match='gtFine/train'):
    official_scripts.run(official_case['root'], 'train',
                         semantic_dir=official_case['semantic_dir'])
