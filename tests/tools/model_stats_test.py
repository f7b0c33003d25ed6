"""Tests for the parameter and multiply-add counting of tools/model_stats."""

import keras
import pytest
import tensorflow as tf

from official_naive_student.modeling import presets
from official_naive_student.tools import model_stats


def _toy_model():
  return keras.Sequential([
      keras.Input((8, 8, 3)),
      keras.layers.Conv2D(4, 3, padding='same'),
      keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding='same'),
      keras.layers.Conv2D(2, 3, dilation_rate=3, padding='same'),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(5),
  ])


def test_toy_model_madds_by_hand():
  model = _toy_model()
  graph = model_stats.trace(lambda x: model(x), (1, 8, 8, 3))
  conv = 8 * 8 * 4 * (3 * 3 * 3)           # 6912
  depthwise = 8 * 8 * 4 * (3 * 3)          # 2304: 8 is a multiple of rate 2.
  # Rate 3 runs on a 9 x 9 space-to-batch grid (8 padded up to 3 * 3).
  atrous_tf = 9 * 9 * 2 * (3 * 3 * 4)      # 5832
  atrous_native = 8 * 8 * 2 * (3 * 3 * 4)  # 4608
  dense = 2 * 5
  assert model_stats.graph_madds(graph) == conv + depthwise + atrous_tf + dense
  assert (model_stats.graph_madds(graph, native_atrous=True)
          == conv + depthwise + atrous_native + dense)
  # Kernels and biases: 3*3*3*4 + 4, 3*3*4 + 4, 3*3*4*2 + 2, 2*5 + 5.
  assert model_stats.count_params(model) == 112 + 40 + 74 + 15


def test_dynamic_shapes_are_refused():
  layer = keras.layers.Conv2D(2, 1)
  layer.build((None, None, None, 3))
  concrete = tf.function(layer).get_concrete_function(
      tf.TensorSpec([1, None, None, 3]))
  with pytest.raises(ValueError, match='not static'):
    model_stats.graph_madds(concrete.graph)


@pytest.mark.parametrize('preset, expected', [
    # Paper: 147.27M (Naive-Student) and 46.72M (Panoptic-DeepLab).
    ('panoptic_deeplab_wr41', 147_269_974),
    ('panoptic_deeplab_x71', 46_745_486),
])
def test_full_size_parameter_counts(preset, expected):
  model = presets.build_panoptic_deeplab(preset, num_classes=19, sync_bn=False)
  model(tf.zeros([1, 17, 17, 3]), training=False)
  assert model_stats.count_params(model) == expected
  keras.backend.clear_session()


def test_deeplab2_preset_has_deeplab2s_size():
  # DeepLab2's wide_resnet41_os16 model reports 140,550,214 from Keras'
  # count_params(), which includes the 70,464 batch-norm moving statistics;
  # count_params here counts trainable weights only.
  model = presets.build_panoptic_deeplab('panoptic_deeplab_wr41_deeplab2',
                                         num_classes=19, sync_bn=False)
  model(tf.zeros([1, 17, 17, 3]), training=False)
  assert model.count_params() == 140_550_214
  assert model_stats.count_params(model) == 140_479_750
  keras.backend.clear_session()
