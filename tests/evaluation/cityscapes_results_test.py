"""The result writer produces exactly the formats the official evaluators read."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.evaluation import cityscapes_results

DS = datasets.CITYSCAPES
IMAGE_ID = 'ulm_000001_000019'


def _panoptic():
  pan = np.zeros((6, 8), np.int64)         # road (train 0, label 7)
  pan[:2] = 10000                          # sky (train 10, label 23)
  pan[2:4, :3] = 13001                     # car instance
  pan[2:4, 3:5] = 13002
  pan[4:, :2] = 13000                      # car pixels without an instance
  pan[5, 7] = 255000                       # void
  return pan


def test_semantic_png_holds_label_ids(tmp_path):
  sem = np.array([[0, 10, 13], [255, 18, 1]])
  path = cityscapes_results.write_semantic(str(tmp_path), IMAGE_ID, sem, DS)
  assert os.path.basename(path) == f'{IMAGE_ID}_labelIds.png'
  image = Image.open(path)
  assert image.mode == 'L'
  np.testing.assert_array_equal(np.asarray(image), [[7, 23, 26], [0, 33, 8]])
  assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temp files


def test_camvid_void_is_its_void_id_not_sky(tmp_path):
  camvid = datasets.get_dataset_info('camvid')
  path = cityscapes_results.write_semantic(
      str(tmp_path), '0016E5_07959', np.array([[0, 255, 10]]), camvid)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), [[0, 11, 10]])


def test_instance_txt_and_masks(tmp_path):
  pan = _panoptic()
  path = cityscapes_results.write_instances(
      str(tmp_path), IMAGE_ID, pan, {13001: 0.25, 13002: 0.123456789}, DS)
  lines = open(path).read().splitlines()
  assert len(lines) == 2
  for line, (pan_id, score) in zip(lines, ((13001, 0.25),
                                           (13002, 0.123456789))):
    rel, label_id, conf = line.split(' ')
    assert re.fullmatch(r'masks/ulm_000001_000019_\d+\.png', rel)
    assert (label_id, float(conf)) == ('26', score)
    mask = np.asarray(Image.open(os.path.join(tmp_path, rel)).convert('L'))
    np.testing.assert_array_equal(mask != 0, pan == pan_id)
  with pytest.raises(ValueError, match='no score for instance 13002'):
    cityscapes_results.write_instances(str(tmp_path), IMAGE_ID, pan,
                                       {13001: 1.0}, DS)


def test_panoptic_png_and_json(tmp_path):
  pan = _panoptic()
  writer = cityscapes_results.ResultsWriter(
      panoptic_dir=str(tmp_path / 'panoptic'))
  writer.write(IMAGE_ID, panoptic=pan)
  writer.close()
  data = json.load(open(writer.panoptic_json))
  assert {c['id'] for c in data['categories']} == set(DS.train_id_to_label_id)
  (ann,) = data['annotations']
  assert ann['image_id'] == IMAGE_ID
  rgb = np.asarray(Image.open(tmp_path / 'panoptic' / ann['file_name']),
                   np.int64)
  ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
  segments = {s['id']: s['category_id'] for s in ann['segments_info']}
  assert 0 not in segments and ids[5, 7] == 0
  assert sorted(segments.values()) == [7, 23, 26, 26, 26]
  for s in ann['segments_info']:
    assert s['area'] == int((ids == s['id']).sum())
  # Each panoptic id is one segment, with the class of its train id.
  for pan_id in np.unique(pan[pan != 255000]):
    (seg_id,) = np.unique(ids[pan == pan_id])
    assert segments[seg_id] == DS.train_id_to_label_id[pan_id // 1000]


def test_bad_image_id_and_unknown_train_id(tmp_path):
  with pytest.raises(ValueError, match='not a Cityscapes image id'):
    cityscapes_results.write_semantic(str(tmp_path), 'frame7',
                                      np.zeros((2, 2), int))
  with pytest.raises(ValueError, match='unknown train id'):
    cityscapes_results.write_semantic(str(tmp_path), IMAGE_ID,
                                      np.full((2, 2), 19))


def test_panoptic_png_round_trip_keeps_crowd(tmp_path):
  """A thing with instance 0 (crowd) is written iscrowd 1 and reads back as crowd."""
  info = datasets.CITYSCAPES
  d, person = info.label_divisor, info.thing_train_ids[0]
  void = info.ignore_label * d
  pan = np.array([[0, person * d, person * d + 1, person * d + 2],
                  [void, person * d, person * d + 1, 0]])
  ann = cityscapes_results.write_panoptic_png(
      str(tmp_path), 'synthburg_000000_000019', pan, info)
  crowd = {s['id']: s['iscrowd'] for s in ann['segments_info']}
  assert crowd == {7000: 0, 24000: 1, 24001: 0, 24002: 0}
  segments = [cityscapes_files.Segment(s['id'], s['category_id'], s['iscrowd'],
                                       s['area']) for s in ann['segments_info']]
  back = decode.decode_panoptic_png(str(tmp_path / ann['file_name']), segments,
                                    info)
  np.testing.assert_array_equal(back, pan)


def test_camvid_panoptic_png_keeps_class_zero(tmp_path):
  """CamVid ids pass; sky (label id 0, no instance) is a segment, not void."""
  camvid = datasets.CAMVID
  pan = np.full((4, 5), 3000)
  pan[0] = 0                      # sky
  pan[3, 4] = 255000              # void
  for image_id in ('0016E5_07959', '0006R0_f00930'):
    ann = cityscapes_results.write_panoptic_png(str(tmp_path), image_id, pan,
                                                camvid)
    rgb = np.asarray(Image.open(tmp_path / ann['file_name']), np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    segments = {s['id']: s['category_id'] for s in ann['segments_info']}
    assert segments == {cityscapes_results.ZERO_SEGMENT_ID: 0, 3000: 3}
    assert (ids[0] == cityscapes_results.ZERO_SEGMENT_ID).all()
    assert ids[3, 4] == 0
  for bad in ('0016E5', '0016E5_07959_x', '0016E5_0795 9'):
    with pytest.raises(ValueError, match='not a Cityscapes image id'):
      cityscapes_results.check_image_id(bad)
