"""Tests for the Panoptic-DeepLab decoder branch and prediction head."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.modeling.decoders import panoptic_deeplab
from official_naive_student.modeling.heads import panoptic_heads


def _trainable(layer):
  return sum(int(np.prod(v.shape)) for v in layer.trainable_weights)


def _features(height, width, output_stride=16):
  """Endpoint dict of a `height` x `width` image, sized as a backbone's."""
  def grid(stride, channels, seed):
    return tf.random.stateless_normal(
        [2, -(-height // stride), -(-width // stride), channels],
        seed=[seed, 3])
  return {common.RES2: grid(4, 6, 1), common.RES3: grid(8, 10, 2),
          common.RES5: grid(output_stride, 12, 3)}


@pytest.mark.parametrize('height, width, output_stride', [
    (65, 129, 16), (64, 128, 32), (33, 17, 8)])
def test_decoder_output_is_stride4(height, width, output_stride):
  decoder = panoptic_deeplab.PanopticDeepLabDecoder(
      low_level_channels=(4, 2), decoder_channels=8, aspp_channels=8,
      atrous_rates=(1, 2, 3), sync_bn=False)
  y = decoder(_features(height, width, output_stride))
  assert y.shape == (2, -(-height // 4), -(-width // 4), 8)


@pytest.mark.parametrize('separable', [False, True])
def test_decoder_config_round_trip(separable):
  decoder = panoptic_deeplab.PanopticDeepLabDecoder(
      low_level_channels=(4, 2), decoder_channels=8, aspp_channels=8,
      atrous_rates=(1, 2, 3), separable=separable, aspp_pool_size=(2, 2),
      aspp_separable=True, sync_bn=False, name='semantic_decoder')
  config = decoder.get_config()
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(decoder))
  assert restored.get_config() == config
  features = _features(17, 33)
  decoder(features)
  restored(features)
  assert decoder.count_params() == restored.count_params()


def test_separable_fusion_has_fewer_weights():
  kwargs = dict(low_level_channels=(4, 2), decoder_channels=8,
                aspp_channels=8, atrous_rates=(1, 2, 3), sync_bn=False)
  regular = panoptic_deeplab.PanopticDeepLabDecoder(separable=False, **kwargs)
  separable = panoptic_deeplab.PanopticDeepLabDecoder(separable=True, **kwargs)
  features = _features(17, 33)
  regular(features)
  separable(features)
  # Trainable weights of the 5x5 fusions: regular, 25 * c * 8 + BN (2 * 8) for
  # c = 8 + 4 and 8 + 2 input channels; separable, 25 * c + its BN (2 * c) +
  # c * 8 + BN (2 * 8).
  regular_fusions = (12 * 8 * 25 + 16) + (10 * 8 * 25 + 16)
  separable_fusions = (25 * 12 + 24 + 12 * 8 + 16) + (25 * 10 + 20 + 10 * 8 + 16)
  assert (_trainable(regular) - _trainable(separable)
          == regular_fusions - separable_fusions)


def test_decoder_rejects_mismatched_low_level_options():
  with pytest.raises(ValueError, match='projection widths'):
    panoptic_deeplab.PanopticDeepLabDecoder(low_level_channels=(4,))


@pytest.mark.parametrize('separable', [False, True])
def test_head_shapes_and_round_trip(separable):
  head = panoptic_heads.PredictionHead(
      intermediate_channels=4, output_channels=3, separable=separable,
      sync_bn=False, name='semantic_head')
  x = tf.random.stateless_normal([2, 5, 9, 6], seed=[4, 4])
  assert head(x).shape == (2, 5, 9, 3)
  restored = panoptic_heads.PredictionHead.from_config(head.get_config())
  assert restored.get_config() == head.get_config()
  restored(x)
  assert restored.count_params() == head.count_params()
  # The last layer is separate so partial restores can skip it.
  assert head.final_conv.kernel.shape == (1, 1, 4, 3)
