"""Tests of image/label decoding, the panoptic convention and every validation error."""

import io
import os

import numpy as np
from PIL import Image
import pytest

from official_naive_student import datasets
from official_naive_student import panoptic_rgb
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders import tiny_cityscapes

# Worked example. Label ids: 7 road, 11 building, 24 person, 26 car, 29 caravan
# (no train id), 1 ego vehicle. Train ids: road 0, building 2, person 11, car 13.
LABEL_IDS = np.array([[7, 7, 26, 26],
                      [26, 24, 24, 1],
                      [24, 29, 11, 26],
                      [1, 1, 1, 1]], np.uint8)
INSTANCE_IDS = np.array([[7, 7, 26002, 26002],
                         [26005, 24, 24, 1],
                         [24001, 29001, 11, 26005],
                         [1, 1, 1, 1]], np.uint16)
# Cars numbered by segment id within the class (26002 -> 1, 26005 -> 2); the
# person group (24, < 1000) is crowd: instance 0; caravan and ego are void.
EXPECTED = np.array([[0, 0, 13001, 13001],
                     [13002, 11000, 11000, 255000],
                     [11001, 255000, 2000, 13002],
                     [255000] * 4], np.int32)


def _save(array, path, mode=None):
  Image.fromarray(array, mode).save(path)
  return str(path)


@pytest.fixture
def gtfine(tmp_path):
  return (_save(LABEL_IDS, tmp_path / 'a_gtFine_labelIds.png'),
          _save(INSTANCE_IDS, tmp_path / 'a_gtFine_instanceIds.png'))


def test_gtfine_worked_example(gtfine):
  np.testing.assert_array_equal(decode.decode_gtfine(*gtfine), EXPECTED)


def test_panoptic_png_worked_example(tmp_path):
  # The same frame in cityscapesscripts' panoptic format, json order shuffled.
  ids = INSTANCE_IDS.astype(np.int32)
  ids[np.isin(ids, [1, 29001])] = 0  # ignored classes are void (id 0).
  path = _save(panoptic_rgb.ids_to_rgb(ids), tmp_path / 'a_panoptic.png')
  segments = [cf.Segment(26005, 26, 0, 2), cf.Segment(7, 7, 0, 2),
              cf.Segment(24, 24, 1, 2), cf.Segment(26002, 26, 0, 2),
              cf.Segment(24001, 24, 0, 1), cf.Segment(11, 11, 0, 1)]
  np.testing.assert_array_equal(decode.decode_panoptic_png(path, segments),
                                EXPECTED)


def test_gtfine_equals_cityscapesscripts_panoptic(tmp_path):
  from cityscapesscripts.preparation import createPanopticImgs  # pylint: disable=g-import-not-at-top
  root = str(tmp_path)
  tiny_cityscapes.write_tree(root, sequences=False, splits=('val',))
  createPanopticImgs.convert2panoptic(
      cityscapesPath=os.path.join(root, 'gtFine'), outputFolder=root,
      setNames=['val'])
  fine = cf.find_records(root, 'val-fine')
  pan = cf.find_records(root, 'val-fine', panoptic_json=os.path.join(
      root, 'cityscapes_panoptic_val.json'))
  for a, b in zip(fine, pan):
    expected = decode.decode_label(a, datasets.CITYSCAPES)
    assert {11000, 11001, 13001, 13002} <= set(np.unique(expected).tolist())
    np.testing.assert_array_equal(
        decode.decode_label(b, datasets.CITYSCAPES), expected)


def test_image_decoding(tmp_path):
  image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
  out = decode.decode_image(_save(image, tmp_path / 'x.png'))
  assert out.dtype == np.uint8 and out.shape == (4, 6, 3)
  np.testing.assert_array_equal(out, image)
  Image.fromarray(image).save(tmp_path / 'x.jpg', quality=95)
  assert decode.decode_image(str(tmp_path / 'x.jpg')).shape == (4, 6, 3)


def test_encode_panoptic_png_round_trip():
  data = decode.encode_panoptic_png(EXPECTED)
  rgb = np.asarray(Image.open(io.BytesIO(data)))
  np.testing.assert_array_equal(panoptic_rgb.rgb_to_ids(rgb), EXPECTED)


def test_corrupt_png_names_file(tmp_path, gtfine):
  path = tmp_path / 'bad_gtFine_labelIds.png'
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 20)
  with pytest.raises(ValueError, match=f'{path}: corrupt or truncated'):
    decode.decode_gtfine(str(path), gtfine[1])


def test_truncated_png_names_file(tmp_path):
  image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
  full = _save(image, tmp_path / 'full.png')
  data = open(full, 'rb').read()
  path = tmp_path / 'cut_leftImg8bit.png'
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=f'{path}: corrupt or truncated image'):
    decode.decode_image(str(path))


def test_size_mismatch_names_both_files(tmp_path, gtfine):
  image = _save(np.zeros((5, 4, 3), np.uint8), tmp_path / 'a_leftImg8bit.png')
  record = cf.Record(image, 'a_000000_000000', 'a_000000', 0,
                     label_format=cf.LABEL_GTFINE, label_path=gtfine[0],
                     instance_path=gtfine[1])
  with pytest.raises(ValueError, match=f'{gtfine[0]}: label 4x4 != 5x4 of '
                     f'{image}'):
    decode.load_example(record, datasets.CITYSCAPES)
  short = _save(INSTANCE_IDS[:3], tmp_path / 'short_instanceIds.png')
  with pytest.raises(ValueError, match=f'{short}: label 3x4 != 4x4'):
    decode.decode_gtfine(gtfine[0], short)


def test_unknown_label_id_names_file(tmp_path, gtfine):
  bad = LABEL_IDS.copy()
  bad[0, 0] = 40
  path = _save(bad, tmp_path / 'bad_labelIds.png')
  with pytest.raises(ValueError, match=rf'{path}: label ids \[40\] not in'):
    decode.decode_gtfine(path, gtfine[1])


def test_instance_ids_disagreeing_with_label_ids(tmp_path, gtfine):
  bad = INSTANCE_IDS.copy()
  bad[0, 0] = 26009
  path = _save(bad, tmp_path / 'bad_instanceIds.png')
  with pytest.raises(ValueError, match=f'{path}: 1 pixels disagree'):
    decode.decode_gtfine(gtfine[0], path)


def test_wrong_mode_names_file(tmp_path, gtfine):
  rgb_label = _save(np.stack([LABEL_IDS] * 3, -1), tmp_path / 'rgb.png')
  with pytest.raises(ValueError, match=f'{rgb_label}: labelIds PNG has PIL '
                     'mode RGB'):
    decode.decode_gtfine(rgb_label, gtfine[1])
  with pytest.raises(ValueError, match=f'{gtfine[0]}: image has PIL mode L'):
    decode.decode_image(gtfine[0])


def test_panoptic_png_inconsistent_with_json(tmp_path):
  ids = np.array([[7, 7], [26001, 0]], np.int32)
  path = _save(panoptic_rgb.ids_to_rgb(ids), tmp_path / 'p.png')
  with pytest.raises(ValueError, match=rf'{path}: segment ids \[26001\] are '
                     'in the PNG but not'):
    decode.decode_panoptic_png(path, [cf.Segment(7, 7, 0, 2)])
  with pytest.raises(ValueError, match=f'{path}: segment 7 has 2 pixels, its '
                     'json entry says area 3'):
    decode.decode_panoptic_png(path, [cf.Segment(7, 7, 0, 3),
                                      cf.Segment(26001, 26, 0, 1)])
  with pytest.raises(ValueError, match=rf'{path}: segment category ids \[99\]'):
    decode.decode_panoptic_png(path, [cf.Segment(7, 99, 0, 2),
                                      cf.Segment(26001, 26, 0, 1)])


def test_semantic_png_camvid(tmp_path):
  labels = np.array([[0, 3, 11], [10, 8, 11]], np.uint8)
  path = _save(labels, tmp_path / 's.png')
  np.testing.assert_array_equal(
      decode.decode_semantic_png(path, datasets.CAMVID, 11),
      [[0, 3000, 255000], [10000, 8000, 255000]])
  labels[0, 0] = 12
  path = _save(labels, tmp_path / 'bad.png')
  with pytest.raises(ValueError, match=rf'{path}: class ids \[12\]'):
    decode.decode_semantic_png(path, datasets.CAMVID, 11)


def test_example_payload_matches_files(tmp_path):
  root = str(tmp_path)
  tiny_cityscapes.write_tree(root, sequences=False, splits=('train',))
  for record in cf.find_records(root, 'train-fine'):
    image, panoptic = decode.load_example(record, datasets.CITYSCAPES)
    payload = decode.example_payload(record, datasets.CITYSCAPES)
    assert payload['image_bytes'] == open(record.image_path, 'rb').read()
    assert (payload['height'], payload['width']) == image.shape[:2]
    assert payload['image_format'] == 'png'
    assert payload['sequence_id'] == record.sequence_id
    rgb = np.asarray(Image.open(io.BytesIO(payload['label_png'])))
    np.testing.assert_array_equal(panoptic_rgb.rgb_to_ids(rgb), panoptic)
