"""Tests for post_processing/tta.py with toy models whose outputs are known."""

import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.post_processing import tta

H = W = 9
Y0, X0 = 6, 4  # The bright row and column of the toy image.


def _image():
  """[1, 9, 9, 3]: ch0 bright column X0, ch1 bright row Y0, ch2 a linear ramp."""
  image = np.zeros((1, H, W, 3), np.float32)
  image[0, :, X0, 0] = 1.0
  image[0, Y0, :, 1] = 1.0
  yy, xx = np.mgrid[0:H, 0:W]
  image[0, ..., 2] = 0.1 * yy + 0.02 * xx
  return image


def _coords(x):
  h, w = tf.shape(x)[1], tf.shape(x)[2]
  ys = tf.cast(tf.range(h), tf.float32)[tf.newaxis, :, tf.newaxis]
  xs = tf.cast(tf.range(w), tf.float32)[tf.newaxis, tf.newaxis, :]
  return ys, xs


def equivariant_model(images):
  """Offsets point at the bright row/column; heatmap passes the ramp through.

  Logits are [x, 0] (x = column in the model's input), so probabilities depend
  on the view and show whether softmax happens before averaging.
  """
  ys, xs = _coords(images)
  target_x = tf.cast(tf.argmax(images[..., 0], axis=2), tf.float32)  # [B, h]
  target_y = tf.cast(tf.argmax(images[..., 1], axis=1), tf.float32)  # [B, w]
  offset = tf.stack([target_y[:, tf.newaxis, :] - ys,
                     target_x[:, :, tf.newaxis] - xs], axis=-1)
  logits = tf.stack([xs + 0.0 * ys, tf.zeros_like(xs + ys)], axis=-1)
  return {
      common.PRED_SEMANTIC_LOGITS: tf.broadcast_to(
          logits, tf.concat([tf.shape(images)[:3], [2]], 0)),
      common.PRED_CENTER_HEATMAP: images[..., 2:3],
      common.PRED_OFFSET: offset,
  }


def _expected_offsets():
  yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
  return np.stack([Y0 - yy, X0 - xx], axis=-1)[np.newaxis]


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_scaled_size_follows_deeplab2():
  assert tta.scaled_size([1025, 2049], 0.5) == [513, 1025]
  assert tta.scaled_size([9, 9], 2.0) == [17, 17]
  assert tta.scaled_size([10, 10], 0.75) == [7, 7]  # int(7.75)
  np.testing.assert_array_equal(tta.scaled_size(tf.constant([9, 9]), 0.5),
                                [5, 5])


def test_single_view_is_the_model_with_softmax():
  out = tta.predict_with_tta(equivariant_model, _image())
  raw = equivariant_model(tf.constant(_image()))
  np.testing.assert_allclose(
      out[common.PRED_SEMANTIC_PROBS],
      _softmax(raw[common.PRED_SEMANTIC_LOGITS].numpy()), rtol=1e-6)
  np.testing.assert_allclose(out[common.PRED_OFFSET], _expected_offsets())
  assert set(out) == {common.PRED_SEMANTIC_PROBS, common.PRED_CENTER_HEATMAP,
                      common.PRED_OFFSET}


def test_flip_is_undone_and_probabilities_are_averaged():
  out = tta.predict_with_tta(equivariant_model, _image(), flip=True)
  # Offsets to a fixed image feature are the same in both views once the
  # mirrored view is flipped back with x negated.
  np.testing.assert_allclose(out[common.PRED_OFFSET], _expected_offsets(),
                             atol=1e-5)
  np.testing.assert_allclose(out[common.PRED_CENTER_HEATMAP],
                             _image()[..., 2:3], atol=1e-6)
  # Logits [x, 0]: the mirrored view sees column W - 1 - x at original x.
  xs = np.broadcast_to(np.arange(W, dtype=np.float32), (1, H, W))
  direct = _softmax(np.stack([xs, 0 * xs], -1))
  mirrored = _softmax(np.stack([W - 1 - xs, 0 * xs], -1))
  np.testing.assert_allclose(out[common.PRED_SEMANTIC_PROBS],
                             (direct + mirrored) / 2, rtol=1e-5)


def test_constant_offsets_flip_sign_and_scale():
  seen = []

  def constant_model(images):
    seen.append(tuple(images.shape[1:3]))
    shape = tf.concat([tf.shape(images)[:3], [1]], 0)
    return {
        common.PRED_SEMANTIC_LOGITS: tf.zeros(
            tf.concat([tf.shape(images)[:3], [2]], 0)),
        common.PRED_CENTER_HEATMAP: tf.fill(shape, 0.5),
        # 2 px down and 3 px right, in the pixels of the model's input.
        common.PRED_OFFSET: tf.concat(
            [tf.fill(shape, 2.0), tf.fill(shape, 3.0)], -1),
    }

  out = tta.predict_with_tta(constant_model, _image(), scales=(0.5, 2.0))
  assert seen == [(5, 5), (17, 17)]
  # At scale 0.5 an input pixel is 2 model pixels' worth (x2); at 2.0, x0.5.
  np.testing.assert_allclose(out[common.PRED_OFFSET][0, 3, 3],
                             [(4.0 + 1.0) / 2, (6.0 + 1.5) / 2], rtol=1e-6)
  np.testing.assert_allclose(out[common.PRED_CENTER_HEATMAP], 0.5)
  np.testing.assert_allclose(out[common.PRED_SEMANTIC_PROBS], 0.5)
  # Mirrored views negate x: the x mean cancels, y does not.
  out = tta.predict_with_tta(constant_model, _image(), flip=True)
  np.testing.assert_allclose(out[common.PRED_OFFSET][0, 0, 0], [2.0, 0.0])


def test_multi_scale_and_flip_keep_equivariant_outputs():
  seen = []

  def model(images):
    seen.append(tuple(images.shape[1:3]))
    return equivariant_model(images)

  out = tta.predict_with_tta(model, _image(), scales=(0.5, 1.0, 2.0),
                             flip=True)
  assert seen == [(5, 5), (5, 5), (9, 9), (9, 9), (17, 17), (17, 17)]
  # Aligned-corner resizing keeps the bright row/column on pixel centers and
  # maps linear ramps exactly, so every view agrees with the original geometry.
  np.testing.assert_allclose(out[common.PRED_OFFSET], _expected_offsets(),
                             atol=1e-4)
  np.testing.assert_allclose(out[common.PRED_CENTER_HEATMAP],
                             _image()[..., 2:3], atol=1e-5)


def test_runs_in_tf_function_with_unknown_size():
  run = tf.function(
      lambda x: tta.predict_with_tta(equivariant_model, x, (0.5, 1.0), True),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  out = run(tf.constant(_image()))
  np.testing.assert_allclose(out[common.PRED_OFFSET], _expected_offsets(),
                             atol=1e-4)


def test_needs_a_scale():
  with pytest.raises(ValueError):
    tta.predict_with_tta(equivariant_model, _image(), scales=())
