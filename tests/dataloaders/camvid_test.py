"""Tests of the CamVid reader: keep_every_k split and the semantic-only pipeline."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.dataloaders import camvid
from official_naive_student.dataloaders import input_pipeline as ip

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
