"""Strips of pseudo-labels: one panel per iteration, void shows the frame."""

import os

import numpy as np
from PIL import Image
import pytest

from official_naive_student import datasets
from official_naive_student.naive_student import loop
from official_naive_student.naive_student import label_folder
from official_naive_student.tools import pseudo_label_strips

INFO = datasets.CITYSCAPES
H, W = 8, 12
IMAGE_ID = 'synthtown_000002_000007'


def _chain(tmp_path, num_iterations=2):
  model_dir = str(tmp_path / 'run')
  for iteration in range(1, num_iterations + 1):
    folder = loop.stage_dir(model_dir, iteration, 'pseudo_label')
    panoptic = np.full((H, W), 0 * INFO.label_divisor, np.int64)  # road
    panoptic[:, W // 2:] = 13 * INFO.label_divisor + iteration    # a car
    panoptic[-2:] = INFO.ignore_label * INFO.label_divisor         # ego car
    label_folder.write_frame(folder, IMAGE_ID, panoptic, INFO)
    label_folder.merge_pseudo_labels(folder, INFO)
  frames = tmp_path / 'data' / 'leftImg8bit_sequence' / 'train' / 'synthtown'
  frames.mkdir(parents=True)
  image = np.random.RandomState(0).randint(0, 255, (H, W, 3)).astype(np.uint8)
  Image.fromarray(image).save(frames / f'{IMAGE_ID}_leftImg8bit.png')
  return model_dir, str(tmp_path / 'data'), image


def test_strip_has_frame_and_one_panel_per_iteration(tmp_path):
  model_dir, data_root, image = _chain(tmp_path)
  out = str(tmp_path / 'strips')
  paths = pseudo_label_strips.write_strips(model_dir, data_root, 'synthtown_000002',
                                           out)
  assert paths == [os.path.join(out, f'{IMAGE_ID}_strip.png')]
  strip = np.asarray(Image.open(paths[0]))
  gap = pseudo_label_strips._GAP
  assert strip.shape == (H, 3 * W + 2 * gap, 3)
  np.testing.assert_array_equal(strip[:, :W], image)
  for panel in range(1, 3):
    x0 = panel * (W + gap)
    labeled = strip[:, x0:x0 + W]
    np.testing.assert_array_equal(labeled[-2:], image[-2:])  # Void: the frame.
    assert not np.array_equal(labeled[:-2], image[:-2])      # Labels: colour.


def test_unknown_sequence_and_missing_labels_are_named(tmp_path):
  model_dir, data_root, _ = _chain(tmp_path)
  with pytest.raises(ValueError, match='synthcity_000009'):
    pseudo_label_strips.write_strips(model_dir, data_root, 'synthcity_000009',
                                     str(tmp_path / 'o'))
  with pytest.raises(FileNotFoundError, match='iter<i>_pseudo_label'):
    pseudo_label_strips.write_strips(str(tmp_path / 'none'), data_root,
                                     'synthtown_000002', str(tmp_path / 'o'))
