"""Tests of ego-car masks: a snippet's mask voids all its frames and nothing else."""

import json

import numpy as np
import pytest

from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import tiny_cityscapes
from official_naive_student.naive_student import ego_car

VOID = 255000
H, W = 32, 64


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('cityscapes'))
  tiny_cityscapes.write_tree(path, splits=('train',))
  return path


def test_apply_worked_example():
  panoptic = np.array([[1, 2], [13001, 13001]], np.int32)
  mask = np.array([[False, False], [False, True]])
  out = ego_car.apply_ego_car_void(panoptic, mask, VOID)
  np.testing.assert_array_equal(out, [[1, 2], [13001, VOID]])
  np.testing.assert_array_equal(panoptic[1, 1], 13001)  # input untouched
  np.testing.assert_array_equal(
      ego_car.apply_ego_car_void(panoptic, None, VOID), panoptic)
  with pytest.raises(ValueError, match='mask'):
    ego_car.apply_ego_car_void(panoptic, mask[:1], VOID)


def test_void_on_every_frame_of_its_snippet_only(root):
  records = cf.find_records(root, 'train-sequence')
  masks = ego_car.snippet_masks(records)
  assert sorted(masks) == sorted(tiny_cityscapes.FINE_IDS['train'])
  rows = {k: tiny_cityscapes.ego_rows(k, H) for k in masks}
  assert rows['aachen_000000_000019'] != rows['aachen_000001_000019']
  for record in records:
    pseudo = np.full((H, W), 13001, np.int32)  # a teacher calling it all car
    out = ego_car.apply_ego_car_void(pseudo, ego_car.mask_for(record, masks),
                                     VOID)
    ego = rows[record.labeled_image_id]
    assert (out[H - ego:] == VOID).all(), record.image_id
    assert (out[:H - ego] == 13001).all(), record.image_id


def test_report_and_tool(root, tmp_path):
  result = ego_car.report(cf.find_records(root, 'train-sequence'))
  entry = result['aachen_000001_000019']
  ego = tiny_cityscapes.ego_rows('aachen_000001_000019', H)
  assert entry == {'sequence_id': 'aachen_000001', 'num_frames': 30,
                   'pixels': ego * W, 'fraction': ego / H,
                   'bbox': [0, H - ego, W - 1, H - 1]}
  out = str(tmp_path / 'ego.json')
  assert ego_car.main(['--cityscapes_root', root, '--split', 'train-sequence',
                       '--output_json', out]) == 0
  with open(out) as f:
    assert json.load(f) == result
