"""Tests of `class_balance`: per-class log-biases that align label shares."""

import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders.synthetic import writer
from official_naive_student.naive_student import class_balance
from official_naive_student.naive_student import pseudo_labeling


def _log_probs(rng, num_pixels, num_classes, second_best=2, margin=1.0):
  """Pixels where class 0 wins and `second_best` trails it by ~`margin`."""
  logits = rng.normal(0.0, 0.3, (num_pixels, num_classes))
  logits[:, 0] += 3.0
  logits[:, second_best] += 3.0 - rng.uniform(0.0, 2 * margin, num_pixels)
  return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_fit_reaches_the_target_shares_and_leaves_absent_classes_alone():
  rng = np.random.default_rng(0)
  log_probs = _log_probs(rng, 20000, 5)
  assert class_balance.label_shares(log_probs, np.zeros(5))[2] < 0.12
  target = np.array([0.75, 0.0, 0.25, 0.0, 0.0])
  bias = class_balance.fit_log_bias(log_probs, target)
  shares = class_balance.label_shares(log_probs, bias)
  np.testing.assert_allclose(shares, target, atol=0.02)
  assert bias[1] == bias[3] == bias[4] == 0.0
  assert bias[2] > bias[0]
  assert np.all(np.abs(bias) <= class_balance.MAX_ABS_LOG_BIAS)


def test_fit_keeps_labels_whose_shares_already_match():
  rng = np.random.default_rng(1)
  log_probs = _log_probs(rng, 20000, 4)
  shares = class_balance.label_shares(log_probs, np.zeros(4))
  bias = class_balance.fit_log_bias(log_probs, shares)
  np.testing.assert_allclose(bias, 0.0, atol=0.02)
  assert np.mean(np.argmax(log_probs + bias, -1) ==
                 np.argmax(log_probs, -1)) > 0.995


def test_fit_bias_is_bounded_for_a_class_the_teacher_never_ranks_high():
  rng = np.random.default_rng(2)
  log_probs = _log_probs(rng, 5000, 3)
  log_probs[:, 1] = np.log(1e-8)  # Never above the others, whatever the bias.
  bias = class_balance.fit_log_bias(log_probs, np.array([0.5, 0.3, 0.2]))
  assert np.all(np.abs(bias) <= class_balance.MAX_ABS_LOG_BIAS)


def test_fit_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='disagree'):
    class_balance.fit_log_bias(np.zeros((10, 4)), np.ones(5) / 5)


def test_apply_log_bias_renormalizes_and_moves_the_argmax():
  probs = tf.constant([[0.6, 0.3, 0.1]])
  balanced = class_balance.apply_log_bias(probs, [0.0, np.log(3.0), 0.0])
  np.testing.assert_allclose(balanced.numpy().sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(balanced.numpy(), [[0.6, 0.9, 0.1]] / np.array(1.6),
                             rtol=1e-5)
  assert int(tf.argmax(balanced, -1)[0]) == 1


def test_with_log_bias_changes_only_the_probabilities():
  probs = tf.constant([[[[0.7, 0.2, 0.1]]]])
  heatmap = tf.constant([[[[0.5]]]])

  def tta_fn(model_fn, images):
    del model_fn, images
    return {common.PRED_SEMANTIC_PROBS: probs,
            common.PRED_CENTER_HEATMAP: heatmap}

  outputs = class_balance.with_log_bias(tta_fn, [0.0, 2.0, 0.0])(None, None)
  assert int(tf.argmax(outputs[common.PRED_SEMANTIC_PROBS], -1)[0, 0, 0]) == 1
  assert outputs[common.PRED_CENTER_HEATMAP] is heatmap


def test_sample_log_probs_never_draws_excluded_pixels():
  probs = np.zeros((4, 5, 3), np.float32)
  probs[..., 0] = 1.0
  probs[:2, :, :] = [0.0, 0.0, 1.0]  # Class 2 only under the excluded rows.
  exclude = np.zeros((4, 5), bool)
  exclude[:2] = True
  drawn = class_balance.sample_log_probs(probs, 500, np.random.default_rng(0),
                                         exclude)
  assert drawn.shape == (500, 3)
  assert np.all(np.argmax(drawn, -1) == 0)
  assert class_balance.sample_log_probs(
      probs, 10, np.random.default_rng(0), np.ones((4, 5), bool)).shape == (0, 3)


def test_label_class_shares_count_the_human_labels(tmp_path):
  root = str(tmp_path / 'data')
  writer.make_synthetic_cityscapes(
      root, 2, seed=0, height=32, width=64, frames_per_sequence=3,
      labeled_frame=1, split_sizes={'train': 2, 'val': 0}, num_workers=1)
  info = datasets.CITYSCAPES
  records = cf.find_records(root, 'train-fine')
  counts = np.zeros(info.num_classes)
  for record in records:
    semantic = decode.decode_label(record, info) // info.label_divisor
    counts += np.bincount(semantic[semantic < info.num_classes],
                          minlength=info.num_classes)
  shares = class_balance.label_class_shares(records, info)
  np.testing.assert_allclose(shares, counts / counts.sum())
  with pytest.raises(ValueError, match='carries a human label'):
    class_balance.label_class_shares(cf.find_records(root, 'train-sequence'),
                                     info)


def test_the_fit_sample_names_an_empty_sample():
  def never_called(images):
    raise AssertionError('no frame should be run')
  with pytest.raises(ValueError, match='class_balance_frames=0'):
    pseudo_labeling.sample_pixel_log_probs(never_called, [], num_frames=0)
