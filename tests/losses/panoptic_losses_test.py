"""Tests for losses/panoptic_losses.py with hand-computed answers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.losses import panoptic_losses as pl

# Two-class logits [ln p, ln(1 - p)] give softmax [p, 1 - p]: with label 0 the
# cross-entropy is -ln p. One 2x2 example, p = 0.9, 0.5, 0.2, 0.1.
P = np.array([[0.9, 0.5], [0.2, 0.1]])
CE = -np.log(P)  # 0.105, 0.693, 1.609, 2.303
LOGITS = np.stack([np.log(P), np.log(1 - P)], axis=-1)[np.newaxis].astype(
    np.float32)
LABELS = np.zeros((1, 2, 2), np.int32)


def _ce(labels=LABELS, weights=None, top_k_percent=1.0, logits=LOGITS):
  return pl.top_k_cross_entropy(labels, logits, weights, ignore_label=255,
                                top_k_percent=top_k_percent).numpy()


def test_cross_entropy_mean_top_k_and_weights():
  np.testing.assert_allclose(_ce(), [CE.mean()], rtol=1e-5)
  # Top 50 % = the 2 hardest pixels (p = 0.2 and 0.1).
  np.testing.assert_allclose(_ce(top_k_percent=0.5),
                             [(CE[1, 0] + CE[1, 1]) / 2], rtol=1e-5)
  # A weight scales a pixel's loss; the count stays the number of pixels.
  weights = np.array([[[3.0, 1.0], [1.0, 1.0]]], np.float32)
  np.testing.assert_allclose(
      _ce(weights=weights),
      [(3 * CE[0, 0] + CE[0, 1] + CE[1, 0] + CE[1, 1]) / 4], rtol=1e-5)
  # Weight 0 removes the pixel from the mean (and from the top-k ranking).
  weights = np.array([[[1.0, 1.0], [1.0, 0.0]]], np.float32)
  np.testing.assert_allclose(_ce(weights=weights, top_k_percent=0.5),
                             [(CE[1, 0] + CE[0, 1]) / 2], rtol=1e-5)


def test_cross_entropy_ignore_label_and_deeplab2_count():
  labels = np.array([[[0, 0], [0, 255]]], np.int32)
  # The hardest pixel is ignored: the top 2 are p = 0.2 and p = 0.5.
  np.testing.assert_allclose(_ce(labels, top_k_percent=0.5),
                             [(CE[1, 0] + CE[0, 1]) / 2], rtol=1e-5)
  # k counts all pixels (DeepLab2): with 3 of 4 ignored, k = 2 keeps the one
  # valid pixel and one zero, and only the non-zero value is averaged.
  labels = np.array([[[0, 255], [255, 255]]], np.int32)
  np.testing.assert_allclose(_ce(labels, top_k_percent=0.5), [CE[0, 0]],
                             rtol=1e-5)


def test_cross_entropy_all_ignored_is_zero_with_finite_gradients():
  labels = np.full((1, 2, 2), 255, np.int32)
  logits = tf.Variable(LOGITS)
  with tf.GradientTape() as tape:
    loss = pl.top_k_cross_entropy(labels, logits, top_k_percent=0.2)
  assert loss.numpy().tolist() == [0.0]
  grad = tape.gradient(loss, logits)
  assert np.all(np.isfinite(grad.numpy())) and np.all(grad.numpy() == 0)


def test_cross_entropy_is_per_example_and_casts_low_precision():
  logits = np.concatenate([LOGITS, np.zeros_like(LOGITS)])  # 2nd: CE = ln 2.
  labels = np.concatenate([LABELS, np.array([[[1, 1], [255, 0]]], np.int32)])
  np.testing.assert_allclose(_ce(labels, logits=logits),
                             [CE.mean(), np.log(2.0)], rtol=1e-5)
  out = pl.top_k_cross_entropy(LABELS, tf.cast(LOGITS, tf.bfloat16))
  assert out.dtype == tf.float32
  np.testing.assert_allclose(out.numpy(), [CE.mean()], rtol=2e-2)


def test_weighted_mse_on_heatmaps():
  target = np.array([[[[1.0], [0.5]], [[0.0], [0.0]]]], np.float32)
  pred = np.array([[[[0.5], [0.5]], [[0.2], [1.0]]]], np.float32)
  weights = np.array([[[1.0, 1.0], [1.0, 0.0]]], np.float32)
  # Errors^2 = 0.25, 0, 0.04, (1 weighted 0): DeepLab2 averages the non-zero
  # weighted values, (0.25 + 0.04) / 2; an exactly-right pixel is not counted.
  np.testing.assert_allclose(pl.weighted_mse(target, pred, weights),
                             [(0.25 + 0.04) / 2], rtol=1e-6)
  np.testing.assert_allclose(pl.weighted_mse(target, pred),
                             [(0.25 + 0.04 + 1.0) / 3], rtol=1e-6)


def test_weighted_l1_averages_channels():
  target = np.zeros((1, 1, 3, 2), np.float32)
  pred = np.array([[[[2.0, -4.0], [1.0, 1.0], [9.0, 9.0]]]], np.float32)
  weights = np.array([[[1.0, 0.5, 0.0]]], np.float32)
  # Per pixel mean(|dy|, |dx|) = 3, 1, 9; weighted 3, 0.5, 0 -> (3 + 0.5) / 2.
  np.testing.assert_allclose(pl.weighted_l1(target, pred, weights), [1.75],
                             rtol=1e-6)
  np.testing.assert_allclose(pl.weighted_l1(target, pred, weights * 0), [0.0])


def _batch(zero_weights=False):
  scale = 0.0 if zero_weights else 1.0
  labels = {
      common.GT_SEMANTIC: np.concatenate([LABELS, LABELS]),
      common.GT_SEMANTIC_WEIGHTS: np.full((2, 2, 2), scale, np.float32),
      common.GT_CENTER_HEATMAP: np.ones((2, 2, 2, 1), np.float32),
      common.GT_CENTER_WEIGHTS: np.full((2, 2, 2), scale, np.float32),
      common.GT_OFFSET: np.zeros((2, 2, 2, 2), np.float32),
      common.GT_OFFSET_WEIGHTS: np.full((2, 2, 2), scale, np.float32),
  }
  outputs = {
      common.PRED_SEMANTIC_LOGITS: tf.Variable(
          np.concatenate([LOGITS, LOGITS])),
      # Example 0: error 0.5 everywhere; example 1: error 0.1.
      common.PRED_CENTER_HEATMAP: tf.Variable(np.concatenate(
          [np.full((1, 2, 2, 1), 0.5), np.full((1, 2, 2, 1), 0.9)]).astype(
              np.float32)),
      # |offset| 4 everywhere.
      common.PRED_OFFSET: tf.Variable(np.full((2, 2, 2, 2), 4.0, np.float32)),
  }
  return labels, outputs


def test_panoptic_loss_weights_and_reduction():
  labels, outputs = _batch()
  loss = pl.PanopticLoss(top_k_percent=0.5)
  out = {k: float(v) for k, v in loss(labels, outputs).items()}
  semantic = (CE[1, 0] + CE[1, 1]) / 2
  center = 200.0 * (0.25 + 0.01) / 2
  offset = 0.01 * 4.0
  assert out[common.LOSS_SEMANTIC] == pytest.approx(semantic, rel=1e-5)
  assert out[common.LOSS_CENTER] == pytest.approx(center, rel=1e-5)
  assert out[common.LOSS_OFFSET] == pytest.approx(offset, rel=1e-5)
  assert out[common.LOSS_TOTAL] == pytest.approx(semantic + center + offset,
                                                 rel=1e-5)
  # sum over the 2 local examples / global batch 8 = the mean / 4.
  scaled = pl.PanopticLoss(top_k_percent=0.5, global_batch_size=8)(
      labels, outputs)
  assert float(scaled[common.LOSS_TOTAL]) == pytest.approx(
      out[common.LOSS_TOTAL] / 4, rel=1e-5)


def test_panoptic_loss_all_weights_zero_is_zero_not_nan():
  labels, outputs = _batch(zero_weights=True)
  loss = pl.PanopticLoss()
  with tf.GradientTape() as tape:
    out = loss(labels, outputs)
  assert {k: float(v) for k, v in out.items()} == {
      common.LOSS_TOTAL: 0.0, common.LOSS_SEMANTIC: 0.0,
      common.LOSS_CENTER: 0.0, common.LOSS_OFFSET: 0.0}
  grads = tape.gradient(out[common.LOSS_TOTAL], list(outputs.values()))
  for grad in grads:
    assert np.all(np.isfinite(grad.numpy()))


def test_panoptic_loss_in_xla_function_with_bfloat16_outputs():
  labels, outputs = _batch()
  loss = pl.PanopticLoss(top_k_percent=0.5)
  expected = float(loss(labels, outputs)[common.LOSS_TOTAL])

  @tf.function(jit_compile=True)
  def run(labels, outputs):
    return loss(labels, {k: tf.cast(v, tf.bfloat16) for k, v in outputs.items()})

  out = run(labels, {k: v.value() for k, v in outputs.items()})
  assert out[common.LOSS_TOTAL].dtype == tf.float32
  assert float(out[common.LOSS_TOTAL]) == pytest.approx(expected, rel=2e-2)


def test_loss_layers_config_round_trip():
  loss = pl.PanopticLoss(center_weight=100.0, top_k_percent=0.3,
                         global_batch_size=16)
  clone = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(loss))
  assert clone.get_config() == loss.get_config()
  ce = pl.TopKCrossEntropy(top_k_percent=0.5, ignore_label=7)
  assert pl.TopKCrossEntropy.from_config(ce.get_config()).get_config() == (
      ce.get_config())
  with pytest.raises(ValueError):
    pl.TopKCrossEntropy(top_k_percent=0.0)
