"""The command line scores result files like the three official evaluators together."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from official_naive_student import datasets
from official_naive_student.evaluation import cityscapes_eval
from official_naive_student.evaluation import instance_ap
from official_naive_student.evaluation import png_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_cli(module, official_case, out, *extra):
  """Runs `python -m official_naive_student.evaluation.<module>` on the case."""
  proc = subprocess.run(
      [sys.executable, '-m', f'official_naive_student.evaluation.{module}',
       '--gt_root', official_case['root'], '--split', 'val',
       '--semantic_dir', official_case['semantic_dir'],
       '--instance_dir', official_case['instance_dir'],
       '--panoptic_json', official_case['panoptic_json'],
       '--panoptic_dir', official_case['panoptic_dir'],
       '--output_json', str(out), *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout, json.load(open(out))


def _official_percent(official_case):
  """The official evaluators' own numbers, read off their jsons, in percent."""
  official = official_case['official']
  pan, ins = official['panoptic'], official['instance']['averages']
  expected = {
      'PQ': pan['All']['pq'], 'SQ': pan['All']['sq'], 'RQ': pan['All']['rq'],
      'PQ_things': pan['Things']['pq'], 'PQ_stuff': pan['Stuff']['pq'],
      'mIoU': official['pixel']['averageScoreClasses'],
      'AP': ins['allAp'], 'AP50': ins['allAp50%']}
  return {key: value * 100 for key, value in expected.items()}


def test_command_line_matches_official(official_case, tmp_path):
  stdout, metrics = _run_cli('cityscapes_eval', official_case,
                             tmp_path / 'metrics.json')
  assert 'PQ_things' in stdout and 'car' in stdout
  assert tuple(sorted(metrics)) == tuple(sorted(cityscapes_eval.RESULT_KEYS))
  for key, value in _official_percent(official_case).items():
    assert metrics[key] == pytest.approx(value, abs=0.01), key


def test_official_scripts_command_writes_their_metrics(official_case, tmp_path):
  """`official_scripts`' command: same flags and keys, the evaluators' numbers."""
  _, metrics = _run_cli('official_scripts', official_case,
                        tmp_path / 'official.json',
                        '--work_dir', str(tmp_path / 'work'))
  assert metrics == pytest.approx(_official_percent(official_case), abs=1e-9)
  assert metrics['AP'] > 0 and metrics['PQ'] > 0 and metrics['mIoU'] > 0


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


def _panoptic_kwargs(official_case):
  return {'panoptic_json': official_case['panoptic_json'],
          'panoptic_dir': official_case['panoptic_dir'], 'num_workers': 1}


def _expected_pq(official_case):
  pan = official_case['official']['panoptic']
  return {'PQ': pan['All']['pq'], 'SQ': pan['All']['sq'],
          'RQ': pan['All']['rq'], 'PQ_things': pan['Things']['pq'],
          'PQ_stuff': pan['Stuff']['pq']}


def test_panoptic_alone_and_with_instances_match_official(official_case):
  # Alone, the gt panoptic PNGs are decoded; with instances, the gt segments
  # come from the instanceIds.
  alone = cityscapes_eval.evaluate(official_case['root'],
                                   **_panoptic_kwargs(official_case))
  both = cityscapes_eval.evaluate(
      official_case['root'], instance_dir=official_case['instance_dir'],
      **_panoptic_kwargs(official_case))
  for key, value in _expected_pq(official_case).items():
    assert alone['metrics'][key] == pytest.approx(value * 100, abs=0.01), key
    assert both['metrics'][key] == pytest.approx(value * 100, abs=0.01), key


def test_panoptic_gt_from_instance_ids_equals_the_png(official_case):
  tasks = cityscapes_eval.frame_tasks(
      official_case['root'], 'val', None, official_case['instance_dir'],
      official_case['panoptic_json'], official_case['panoptic_dir'],
      datasets.CITYSCAPES)
  for task in tasks:
    gt = instance_ap.index_instance_ids(png_io.read_png(task['gt_instance']))
    segments = task['gt_segments']
    index = cityscapes_eval.panoptic_gt_rows(gt, segments)[gt.compact]
    ids = png_io.read_segment_ids(task['gt_panoptic'])
    lut = {0: 0, **{s[0]: g + 1 for g, s in enumerate(segments)}}
    assert np.array_equal(index, np.vectorize(lut.get)(ids))
    # Any disagreement with the json means: decode the PNG.
    first = segments[0]
    for wrong in ([first[:3] + (first[3] + 1,)] + segments[1:],  # area
                  segments[1:],                                 # missing
                  [s[:3] for s in segments],                    # no areas
                  segments + [(99000, 0, 0, 1)]):               # extra
      assert cityscapes_eval.panoptic_gt_rows(gt, wrong) is None


def test_panoptic_falls_back_to_png_when_instance_ids_changed(
    official_case, tmp_path, monkeypatch):
  root = str(tmp_path / 'cityscapes')
  shutil.copytree(official_case['root'], root)
  image_id = 'aachen_000000_000019'
  path = os.path.join(root, 'gtFine', 'val', 'aachen',
                      f'{image_id}_gtFine_instanceIds.png')
  inst = np.array(Image.open(path)).astype(np.int32)
  inst[inst == inst.max()] = 7  # One instance becomes road.
  Image.fromarray(inst.astype(np.uint16)).save(path)
  read = []
  original = png_io.read_segment_ids
  monkeypatch.setattr(png_io, 'read_segment_ids',
                      lambda p: read.append(p) or original(p))
  both = cityscapes_eval.evaluate(
      root, instance_dir=official_case['instance_dir'],
      **_panoptic_kwargs(official_case))
  gt_pngs = [p for p in read if p.startswith(root)]
  assert [os.path.basename(p) for p in gt_pngs] == [
      f'{image_id}_gtFine_panoptic.png']
  alone = cityscapes_eval.evaluate(root, **_panoptic_kwargs(official_case))
  assert both['panoptic'] == alone['panoptic']
