"""Tests of the CamVid reader: keep_every_k split and the semantic-only pipeline."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.dataloaders import camvid
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders import input_pipeline as ip
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import oracle_labels
from official_naive_student.naive_student import label_folder

# sequence -> frame numbers (unsorted on purpose; CamVid pads them differently).
TRAIN = {'0001TP': [6690, 6720, 6750, 6780, 6810], '0006R0': [9, 10, 11, 12]}
VAL = {'0016E5': [7959, 7961]}


def _write(root, folder, frames):
  rng = np.random.default_rng(0)
  for sequence, numbers in frames.items():
    for n in reversed(numbers):
      prefix = 'f' if sequence == '0006R0' else ''  # as in the real files
      stem = f'{sequence}_{prefix}{n:05d}'
      os.makedirs(os.path.join(root, folder), exist_ok=True)
      os.makedirs(os.path.join(root, folder + 'annot'), exist_ok=True)
      Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).save(
          os.path.join(root, folder, stem + '.jpg'))
      label = np.full((12, 16), 3, np.uint8)
      label[:4] = 0
      label[-2:] = 11  # void
      Image.fromarray(label).save(os.path.join(root, folder + 'annot',
                                               stem + '.png'))


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('camvid'))
  _write(path, 'train', TRAIN)
  _write(path, 'val', VAL)
  return path


def test_keep_every_k_per_sequence(root):
  found = camvid.find_records(root, 'train', keep_every_k=2)
  assert [(r.sequence_id, r.frame) for r in found.labeled] == [
      ('0001TP', 6690), ('0001TP', 6750), ('0001TP', 6810), ('0006R0', 9),
      ('0006R0', 11)]
  assert [(r.sequence_id, r.frame) for r in found.unlabeled] == [
      ('0001TP', 6720), ('0001TP', 6780), ('0006R0', 10), ('0006R0', 12)]
  assert all(r.has_label for r in found.labeled)
  assert not any(r.has_label for r in found.unlabeled)
  shifted = camvid.find_records(root, 'train', keep_every_k=2, offset=1)
  assert ({r.image_id for r in shifted.labeled} ==
          {r.image_id for r in found.unlabeled})
  everything = camvid.find_records(root, 'train+val')
  assert len(everything.labeled) == 11 and not everything.unlabeled
  assert everything.labeled[0].image_id == '0001TP_06690'


def test_errors_name_the_path(root, tmp_path):
  with pytest.raises(FileNotFoundError, match=f'{tmp_path}/val: split folder'):
    camvid.find_records(str(tmp_path), 'val')
  os.makedirs(tmp_path / 'val')
  with pytest.raises(ValueError, match=f'{tmp_path}/val: empty split'):
    camvid.find_records(str(tmp_path), 'val')
  _write(str(tmp_path), 'val', VAL)
  os.remove(tmp_path / 'valannot' / '0016E5_07961.png')
  with pytest.raises(FileNotFoundError,
                     match='0016E5_07961.jpg: image without'):
    camvid.find_records(str(tmp_path), 'val')
  with pytest.raises(ValueError, match='keep_every_k'):
    camvid.find_records(root, 'train', keep_every_k=0)


def test_semantic_only_pipeline(root):
  found = camvid.find_records(root, 'train', keep_every_k=2)
  train = ip.InputPipeline(records=found.labeled, dataset_name='camvid',
                           mode='train', global_batch_size=2, crop_size=(8, 8),
                           min_scale=1.0, max_scale=1.0)
  (features, labels), = train.dataset_fn().take(1)
  assert features[common.IMAGE].shape == (2, 8, 8, 3)
  panoptic = labels[common.GT_PANOPTIC].numpy()
  assert (panoptic % 1000 == 0).all()
  assert set(np.unique(panoptic // 1000)) <= {0, 3, 255}
  np.testing.assert_array_equal(labels[common.GT_CENTER_HEATMAP], 0.0)
  np.testing.assert_array_equal(labels[common.GT_OFFSET_WEIGHTS], 0.0)
  unlabeled = ip.InputPipeline(records=found.unlabeled, dataset_name='camvid',
                               mode='unlabeled', global_batch_size=1)
  names = [b[common.IMAGE_NAME][0].numpy().decode()
           for b in unlabeled.dataset_fn()]
  assert names == [r.image_id for r in found.unlabeled]
  evaluation = ip.InputPipeline(records=found.labeled[:1],
                                dataset_name='camvid', mode='eval',
                                global_batch_size=1)
  (_, labels), = evaluation.dataset_fn()
  expected = np.full((12, 16), 3000)
  expected[:4] = 0
  expected[-2:] = 255000
  np.testing.assert_array_equal(labels[common.GT_PANOPTIC][0], expected)
  assert tf.is_tensor(labels[common.GT_PANOPTIC])


def test_default_root_is_the_shared_copy_next_to_the_repository():
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  assert camvid.DEFAULT_ROOT == os.path.normpath(
      os.path.join(repo, '..', 'shared', 'data', 'camvid'))


def test_record_functions(root, monkeypatch):
  labeled = camvid.camvid_labeled_records(root)  # keep_every_k=4
  assert [(r.sequence_id, r.frame) for r in labeled] == [
      ('0001TP', 6690), ('0001TP', 6810), ('0006R0', 9)]
  unlabeled = camvid.camvid_unlabeled_records(root, 'train', 4)
  assert len(unlabeled) == 9 - 3 and not any(r.has_label for r in unlabeled)
  assert ({r.image_id for r in labeled} | {r.image_id for r in unlabeled} ==
          {r.image_id for r in camvid.find_records(root, 'train').labeled})
  dropped = camvid.camvid_dropped_label_records(root, 'train', 4)
  assert [r.image_id for r in dropped] == [r.image_id for r in unlabeled]
  assert all(r.has_label for r in dropped)
  val = camvid.camvid_labeled_records(root, 'val', keep_every_k=1)
  assert [r.image_id for r in val] == ['0016E5_07959', '0016E5_07961']
  # No root: the default one.
  monkeypatch.setattr(camvid, 'DEFAULT_ROOT', root)
  assert camvid.camvid_labeled_records() == labeled
  assert camvid.camvid_unlabeled_records(offset=1) == (
      camvid.find_records(root, 'train', 4, 1).unlabeled)


def test_pseudo_labels_round_trip_with_camvid_ids(root, tmp_path):
  """Written by the pseudo-label stage (sky is class and label id 0), read back."""
  info = datasets.CAMVID
  unlabeled = camvid.camvid_unlabeled_records(root)
  out = str(tmp_path / 'labels')
  expected = {}
  for k, record in enumerate(unlabeled):
    semantic = np.full((12, 16), 3)
    semantic[:4] = 0              # sky: label id 0 * divisor is a 0 segment id.
    semantic[6:, :5] = 10
    semantic[-1] = info.ignore_label
    semantic[5, k] = 8
    panoptic = semantic * info.label_divisor
    label_folder.write_frame(out, record.image_id, panoptic, info)
    expected[record.image_id] = panoptic
  json_path = label_folder.merge_pseudo_labels(out, info)
  with open(json_path) as f:
    categories = json.load(f)['categories']
  assert [c['id'] for c in categories] == list(range(11))
  assert not any(c['isthing'] for c in categories)

  records = camvid.camvid_pseudo_labeled_records(root, json_path)
  assert [r.image_id for r in records] == [r.image_id for r in unlabeled]
  for record in records:
    assert record.label_format == cityscapes_files.LABEL_PANOPTIC
    np.testing.assert_array_equal(decode.decode_label(record, info),
                                  expected[record.image_id])
  both = camvid.camvid_pseudo_labeled_records(root, json_path,
                                              include_labeled=True)
  assert both[:len(records)] == records
  assert both[len(records):] == camvid.camvid_labeled_records(root)
  # The student's pipeline reads them as it reads human labels.
  train = ip.InputPipeline(records=both, dataset_name='camvid', mode='train',
                           global_batch_size=2, crop_size=(8, 8))
  (_, labels), = train.dataset_fn().take(1)
  assert set(np.unique(labels[common.GT_PANOPTIC]) // 1000) <= {
      0, 3, 8, 10, 255}
  with pytest.raises(ValueError, match='panoptic_json'):
    camvid.camvid_pseudo_labeled_records(root)
  with pytest.raises(FileNotFoundError, match='no annotation'):
    camvid.camvid_pseudo_labeled_records(root, json_path, offset=1)


def test_pseudo_label_quality_against_the_dropped_labels(root, tmp_path):
  """The hidden human labels score 100; a wrong frame lowers mIoU; none: error."""
  info = datasets.CAMVID
  dropped = camvid.camvid_dropped_label_records(root)
  out = str(tmp_path / 'labels')
  # Oracle labels: the dropped human labels, written as pseudo-labels.
  oracle_labels.oracle_labels(None, out, dropped, dataset_name='camvid')
  json_path = label_folder.panoptic_json_path(out)
  quality = label_quality.measure_against_records(json_path, dropped, info)
  assert quality['mIoU'] == pytest.approx(100.0)
  assert quality['PQ'] == pytest.approx(100.0)
  assert quality['num_frames'] == len(dropped)
  wrong = decode.decode_label(dropped[0], info)
  label_folder.write_frame(
      out, dropped[0].image_id,
      np.full_like(wrong, 3 * info.label_divisor), info)
  json_path = label_folder.merge_pseudo_labels(out, info)
  quality = label_quality.measure_against_records(json_path, dropped, info)
  assert quality['mIoU'] < 100.0
  # Class 3 (label id 3) now covers a whole frame: more labeled than true pixels.
  assert quality['class_pixel_ratio'][info.class_names[3]] > 1.0
  with pytest.raises(KeyError, match=dropped[0].image_id):
    label_quality.measure_against_records(json_path, dropped[1:], info)
  unlabeled = camvid.camvid_unlabeled_records(root)
  with pytest.raises(ValueError, match='no label and no hidden_gt_root'):
    oracle_labels.oracle_labels(None, str(tmp_path / 'none'), unlabeled,
                                dataset_name='camvid')


def test_panoptic_json_category_ids_are_checked_in_camvid_space(root, tmp_path):
  """A category id that is no CamVid class fails instead of becoming void."""
  record, = camvid.camvid_unlabeled_records(root)[:1]
  out = str(tmp_path / 'labels')
  annotation = label_folder.write_frame(
      out, record.image_id, np.full((12, 16), 3000), datasets.CAMVID)
  annotation['segments_info'][0]['category_id'] = 24  # A Cityscapes label id.
  json_path = str(tmp_path / 'bad.json')
  with open(json_path, 'w') as f:
    json.dump({'annotations': [annotation]}, f)
  bad, = cityscapes_files.with_panoptic_labels(
      [record], json_path,
      label_root=os.path.join(out, label_folder.LABEL_NAME))
  with pytest.raises(ValueError, match=r'segment category ids \[24\]'):
    decode.decode_label(bad, datasets.CAMVID)
