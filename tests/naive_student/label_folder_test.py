"""Tests of a pseudo-label folder (`label_folder`) as the Student reads it.

The labels read back through the same loaders as human labels, and the quality
measure is exact (100 on the ground truth itself, via `oracle_labels`).
"""

import json
import os

import numpy as np
import pytest

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.evaluation import panoptic_quality
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import oracle_labels
from official_naive_student.naive_student import label_folder

INFO = datasets.CITYSCAPES
H, W = 64, 128  # The frames of the `setup` fixture (conftest.py).
NUM_FRAMES = 20  # Its 2 snippets x 10 frames.


def test_labels_read_back_and_train(setup):
  full = setup['full']
  assert file_io.is_done(full)
  with open(label_folder.panoptic_json_path(full)) as f:
    data = json.load(f)
  assert len(data['annotations']) == NUM_FRAMES
  label_ids = set(INFO.train_id_to_label_id)
  for ann in data['annotations']:
    for segment in ann['segments_info']:
      assert segment['category_id'] in label_ids and segment['iscrowd'] == 0
  records = cf.find_records(setup['root'], 'train-sequence',
                            panoptic_json=label_folder.panoptic_json_path(full))
  assert all(r.label_format == cf.LABEL_PANOPTIC for r in records)
  pipeline = input_pipeline.InputPipeline(
      records=records, mode='train', global_batch_size=2, crop_size=(H, W))
  features, labels = next(iter(pipeline.dataset_fn()))
  assert features[common.IMAGE].shape == (2, H, W, 3)
  assert labels[common.GT_PANOPTIC].shape == (2, H, W)
  assert labels[common.GT_OFFSET].shape == (2, H, W, 2)


def test_oracle_labels_are_the_ground_truth(setup):
  """Oracle labels read back (crowd included) as the ground truth, PQ 100."""
  hidden = os.path.join(setup['root'], 'hidden_gt')
  out = str(setup['base'] / 'from_gt')
  assert oracle_labels.oracle_labels(None, out, setup['records'], hidden) == out
  quality = label_quality.measure_pseudo_label_quality(
      label_folder.panoptic_json_path(out), hidden, 'train')
  assert quality['num_frames'] == NUM_FRAMES
  assert quality['PQ'] == pytest.approx(100.0)
  assert quality['PQ_things'] == pytest.approx(100.0)
  assert quality['mIoU'] == pytest.approx(100.0)
  present = [v for v in quality['class_pixel_ratio'].values() if v is not None]
  assert present and all(v == pytest.approx(1.0) for v in present)
  assert all(v in (None, pytest.approx(100.0))
             for v in quality['class_IoU'].values())
  records = cf.find_records(setup['root'], 'train-sequence',
                            panoptic_json=label_folder.panoptic_json_path(out))
  for record in records:
    gt = panoptic_quality.panoptic_from_instance_ids(
        label_quality.hidden_instance_ids(hidden, 'train', record.image_id), INFO)
    got = decode.decode_label(record, INFO)
    # The same classes, crowd and segments (instances are renumbered 1, 2, ...).
    np.testing.assert_array_equal(got // INFO.label_divisor,
                                  gt // INFO.label_divisor)
    np.testing.assert_array_equal(got % INFO.label_divisor == 0,
                                  gt % INFO.label_divisor == 0)
    pairs = np.unique(np.stack([gt.ravel(), got.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(gt)) == len(np.unique(got))
  # Resumes per frame: a DONE folder is left alone, an unfinished one refilled.
  fragment = label_folder.fragment_path(out, records[0].image_id)
  with open(label_folder.panoptic_json_path(out)) as f:
    merged = json.load(f)
  os.remove(fragment)
  oracle_labels.oracle_labels(None, out, setup['records'], hidden)
  assert not os.path.exists(fragment)
  os.remove(os.path.join(out, file_io.DONE_MARKER))
  oracle_labels.oracle_labels(None, out, setup['records'], hidden)
  assert os.path.exists(fragment) and file_io.is_done(out)
  with open(label_folder.panoptic_json_path(out)) as f:
    assert json.load(f) == merged
  teacher = label_quality.measure_pseudo_label_quality(
      label_folder.panoptic_json_path(setup['full']), hidden)
  assert teacher['PQ'] < 50.0 and teacher['mIoU'] < 50.0  # Random Teacher.
