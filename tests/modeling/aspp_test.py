"""Tests for ASPP and corner-aligned resizing: shapes, pooling at any size, configs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student.modeling.layers import aspp
from official_naive_student.modeling.layers import resize


def _features(height, width, channels=6, seed=0):
  return tf.random.stateless_normal([2, height, width, channels], seed=[seed, 2])


@pytest.mark.parametrize('output_stride, expected', [
    (8, (12, 24, 36)), (16, (6, 12, 18)), (32, (3, 6, 9))])
def test_scale_atrous_rates(output_stride, expected):
  assert aspp.scale_atrous_rates((6, 12, 18), output_stride) == expected


@pytest.mark.parametrize('height, width', [(5, 9), (1, 1), (8, 16)])
def test_output_shape(height, width):
  layer = aspp.ASPP(output_channels=4, atrous_rates=(1, 2, 3), sync_bn=False)
  assert layer(_features(height, width)).shape == (2, height, width, 4)


def test_image_pooling_is_global_at_every_size():
  # The pooled branch must equal the conv of the mean over the actual map, so
  # the same weights are correct at every test-time scale.
  layer = aspp.ASPP(output_channels=3, atrous_rates=(1, 2, 3), sync_bn=False)
  for size in [(4, 6), (9, 17)]:
    x = _features(*size, seed=size[0])
    branch = layer.image_pooling(x, training=False)
    expected = layer.pool_conv(tf.reduce_mean(x, axis=[1, 2], keepdims=True))
    np.testing.assert_allclose(branch.numpy(),
                               np.broadcast_to(expected.numpy(), branch.shape),
                               rtol=1e-5, atol=1e-6)


def test_tiled_pooling_with_full_window_equals_global():
  # DeepLab2's crop-sized window on a full-image crop is global pooling.
  x = _features(5, 9)
  global_pool = aspp.ASPP(output_channels=3, atrous_rates=(1, 2, 3),
                          sync_bn=False)
  tiled = aspp.ASPP(output_channels=3, atrous_rates=(1, 2, 3), sync_bn=False,
                    pool_size=(50, 90))  # Clipped to the 5 x 9 map.
  global_pool(x)
  tiled(x)
  tiled.set_weights(global_pool.get_weights())
  np.testing.assert_allclose(tiled(x).numpy(), global_pool(x).numpy(),
                             rtol=1e-5, atol=1e-6)
  # A smaller window pools locally and changes the result.
  local = aspp.ASPP(output_channels=3, atrous_rates=(1, 2, 3), sync_bn=False,
                    pool_size=(2, 3))
  local(x)
  local.set_weights(global_pool.get_weights())
  assert not np.allclose(local(x).numpy(), global_pool(x).numpy())


def test_config_round_trip():
  layer = aspp.ASPP(output_channels=8, atrous_rates=(2, 4, 6),
                    dropout_rate=0.2, pool_size=(3, 5), separable=True,
                    sync_bn=False, name='aspp')
  restored = aspp.ASPP.from_config(layer.get_config())
  assert restored.get_config() == layer.get_config()
  x = _features(5, 7)
  layer(x)
  restored(x)
  assert len(restored.weights) == len(layer.weights)
  serialized = keras.saving.serialize_keras_object(layer)
  assert isinstance(keras.saving.deserialize_keras_object(serialized),
                    aspp.ASPP)


def test_invalid_arguments():
  with pytest.raises(ValueError, match='3 atrous rates'):
    aspp.ASPP(atrous_rates=(1, 2))
  with pytest.raises(ValueError, match='pool_size'):
    aspp.ASPP(pool_size=(3, None))


def test_resize_align_corners_keeps_corners():
  x = tf.reshape(tf.range(2 * 3 * 5, dtype=tf.float32), [1, 2, 3, 5])
  y = resize.resize_align_corners(x, [5, 9])
  np.testing.assert_allclose(y[0, 0, 0].numpy(), x[0, 0, 0].numpy())
  np.testing.assert_allclose(y[0, -1, -1].numpy(), x[0, -1, -1].numpy())
  assert resize.resize_align_corners(x, [2, 3]) is x


def test_offsets_rescaled_to_target_pixels():
  # A stride-4 map of a 17 x 33 image is 5 x 9: 1 map pixel = 4 input pixels.
  offsets = tf.concat([tf.fill([1, 5, 9, 1], 1.5),
                       tf.fill([1, 5, 9, 1], -2.0)], axis=-1)
  y = resize.resize_and_rescale_offsets(offsets, [17, 33])
  assert y.shape == (1, 17, 33, 2)
  np.testing.assert_allclose(y[..., 0].numpy(), 6.0, rtol=1e-6)
  np.testing.assert_allclose(y[..., 1].numpy(), -8.0, rtol=1e-6)
