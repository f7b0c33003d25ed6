"""The command line scores result files like the three official evaluators together."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from official_naive_student.evaluation import cityscapes_eval

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_command_line_matches_official(official_case, tmp_path):
  out = tmp_path / 'metrics.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'official_naive_student.evaluation.cityscapes_eval',
       '--gt_root', official_case['root'], '--split', 'val',
       '--semantic_dir', official_case['semantic_dir'],
       '--instance_dir', official_case['instance_dir'],
       '--panoptic_json', official_case['panoptic_json'],
       '--panoptic_dir', official_case['panoptic_dir'],
       '--output_json', str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'PQ_things' in proc.stdout and 'car' in proc.stdout
  metrics = json.load(open(out))
  assert tuple(sorted(metrics)) == tuple(sorted(cityscapes_eval.RESULT_KEYS))
  official = official_case['official']
  pan, ins = official['panoptic'], official['instance']['averages']
  expected = {
      'PQ': pan['All']['pq'], 'SQ': pan['All']['sq'], 'RQ': pan['All']['rq'],
      'PQ_things': pan['Things']['pq'], 'PQ_stuff': pan['Stuff']['pq'],
      'mIoU': official['pixel']['averageScoreClasses'],
      'AP': ins['allAp'], 'AP50': ins['allAp50%']}
  for key, value in expected.items():
    assert metrics[key] == pytest.approx(value * 100, abs=0.01), key


def test_only_requested_kinds(official_case):
  results = cityscapes_eval.evaluate(
      official_case['root'], 'val', semantic_dir=official_case['semantic_dir'],
      num_workers=1)
  assert results['metrics']['mIoU'] is not None
  assert results['metrics']['PQ'] is None and results['metrics']['AP'] is None


def _copy(official_case, tmp_path, kind):
  dst = str(tmp_path / kind)
  shutil.copytree(official_case[f'{kind}_dir'], dst)
  return dst


def test_missing_prediction_names_folder_and_frame(official_case, tmp_path):
  sem = _copy(official_case, tmp_path, 'semantic')
  os.remove(os.path.join(sem, 'bochum_000001_000313_labelIds.png'))
  with pytest.raises(FileNotFoundError,
                     match=f'{sem}: no prediction bochum_000001_000313'):
    cityscapes_eval.evaluate(official_case['root'], semantic_dir=sem,
                             num_workers=1)


def test_wrong_size_and_unknown_id_name_the_file(official_case, tmp_path):
  sem = _copy(official_case, tmp_path, 'semantic')
  path = os.path.join(sem, 'aachen_000000_000019_labelIds.png')
  Image.fromarray(np.zeros((64, 127), np.uint8)).save(path)
  with pytest.raises(ValueError, match=f'{path}: size'):
    cityscapes_eval.evaluate(official_case['root'], semantic_dir=sem,
                             num_workers=1)
  Image.fromarray(np.full((64, 128), 40, np.uint8)).save(path)
  with pytest.raises(ValueError, match=f'{path}: unknown id 40'):
    cityscapes_eval.evaluate(official_case['root'], semantic_dir=sem,
                             num_workers=1)


def test_instance_mask_outside_results_folder(official_case, tmp_path):
  ins = _copy(official_case, tmp_path, 'instance')
  txt = os.path.join(ins, 'aachen_000000_000019_instances.txt')
  with open(txt, 'a') as f:
    f.write('../elsewhere.png 26 0.5\n')
  with pytest.raises(ValueError, match='outside'):
    cityscapes_eval.evaluate(official_case['root'], instance_dir=ins,
                             num_workers=1)
