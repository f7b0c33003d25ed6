"""Tests for the aligned Xception backbone: strides, sizes, gradients, I/O."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.modeling.backbones import xception

_TINY = dict(width_multiplier=0.125, num_middle_blocks=1, sync_bn=False)
_ENDPOINTS = (common.RES2, common.RES3, common.RES4, common.RES5)


def _tiny(depth=71, output_stride=16, **kwargs):
  return xception.Xception(
      depth=depth, output_stride=output_stride, **{**_TINY, **kwargs})


@pytest.fixture(scope='module')
def tiny():
  """Returns built tiny models, one per (depth, output_stride), to save CPU."""
  cache = {}

  def get(depth=71, output_stride=16):
    key = (depth, output_stride)
    if key not in cache:
      cache[key] = _tiny(depth, output_stride)
      cache[key](_images(17, 17), training=False)
    return cache[key]

  return get


def _images(height, width, seed=0):
  return tf.random.stateless_normal([2, height, width, 3], seed=[seed, 1])


@pytest.mark.parametrize('depth, output_stride, strides, height, width', [
    (71, 8, (4, 8, 8, 8), 33, 65),
    (71, 16, (4, 8, 16, 16), 33, 65),
    (71, 32, (4, 8, 16, 32), 33, 65),
    (71, 8, (4, 8, 8, 8), 32, 48),
    (65, 8, (4, 8, 8, 8), 32, 48),
])
def test_endpoint_shapes(tiny, depth, output_stride, strides, height,
                         width):
  model = tiny(depth, output_stride)
  outputs = model(_images(height, width), training=False)

  assert sorted(outputs) == sorted(_ENDPOINTS)
  assert model.output_stride == output_stride
  assert model.endpoint_strides == dict(zip(_ENDPOINTS, strides))
  for key, stride in zip(_ENDPOINTS, strides):
    expected = (2, math.ceil(height / stride), math.ceil(width / stride),
                model.endpoint_channels[key])
    assert tuple(outputs[key].shape) == expected, key


def test_tiny_channels_follow_width_multiplier(tiny):
  assert tiny(71).endpoint_channels == {
      common.RES2: 32, common.RES3: 91, common.RES4: 128, common.RES5: 256}


def test_activation_placement_follows_deeplab(tiny):
  # res4 is a pre-activation BN output (DeepLab's separable_conv2_pointwise);
  # res5 ends with the last module's in-separable ReLU.
  outputs = tiny(71, 16)(_images(33, 33), training=True)
  assert float(tf.reduce_min(outputs[common.RES4])) < 0.0
  assert float(tf.reduce_min(outputs[common.RES5])) >= 0.0


def test_full_size_param_count():
  # timm's ports of DeepLab's ImageNet checkpoints list 42.3M (xception71) and
  # 39.9M (xception65: our 37,867,312, not built here to save CPU) with a
  # 2,049,000-param classifier we omit. Total adds BN moving statistics.
  model = xception.Xception(depth=71, output_stride=16, sync_bn=False)
  outputs = model(tf.zeros([1, 65, 65, 3]), training=False)

  assert model.endpoint_channels == {
      common.RES2: 256, common.RES3: 728, common.RES4: 1024,
      common.RES5: 2048}
  assert outputs[common.RES5].shape == (1, 5, 5, 2048)
  assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == (
      40_289_736)
  assert model.count_params() == 40_488_712


def test_gradients_reach_all_trainable_variables(tiny):
  model = tiny(71, 8)
  images = _images(32, 32)
  with tf.GradientTape() as tape:
    outputs = model(images, training=True)
    loss = sum(tf.reduce_mean(tf.square(outputs[k])) for k in _ENDPOINTS)
  grads = tape.gradient(loss, model.trainable_variables)

  assert len(grads) == len(model.trainable_variables) > 0
  for var, grad in zip(model.trainable_variables, grads):
    assert grad is not None, var.path
    assert np.all(np.isfinite(grad.numpy())), var.path
    if 'kernel' in var.path:
      assert float(tf.reduce_max(tf.abs(grad))) > 0.0, var.path


def test_get_config_round_trip():
  model = _tiny(depth='xception65', output_stride=8, name='teacher_backbone')
  config = model.get_config()
  restored = xception.Xception.from_config(config)
  assert restored.get_config() == config
  assert restored.name == 'teacher_backbone'
  assert restored.endpoint_channels == model.endpoint_channels

  serialized = keras.saving.serialize_keras_object(model)
  deserialized = keras.saving.deserialize_keras_object(serialized)
  assert isinstance(deserialized, xception.Xception)
  assert deserialized.get_config() == config


def test_module_get_config_round_trip():
  module = xception.XceptionModule(
      filters=(8, 8, 16), strides=2, shortcut='conv', sync_bn=False)
  restored = xception.XceptionModule.from_config(module.get_config())
  assert restored.get_config() == module.get_config()
  outputs, features = restored(_images(9, 9))
  assert outputs.shape == (2, 5, 5, 16)
  assert features.shape == (2, 9, 9, 8)


def test_checkpoint_round_trip_reproduces_outputs(tiny, tmp_path):
  model = tiny(71, 16)
  images = _images(33, 33, seed=3)
  model(images, training=True)  # Moves BN statistics away from their init.
  expected = model(images, training=False)
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))

  restored = _tiny(71, output_stride=16)
  restored(images, training=False)
  tf.train.Checkpoint(model=restored).read(path).assert_consumed()
  actual = restored(images, training=False)
  for key in _ENDPOINTS:
    np.testing.assert_array_equal(actual[key].numpy(), expected[key].numpy())


@pytest.mark.parametrize('depth', [71, '71', 'xception71', 'Xception_71'])
def test_parse_depth_accepts_names(depth):
  assert xception.parse_depth(depth) == 71


@pytest.mark.parametrize('kwargs, match', [
    (dict(depth=50), 'depth'),
    (dict(depth='resnet50'), 'depth'),
    (dict(output_stride=4), 'output_stride'),
    (dict(width_multiplier=0.0), 'width_multiplier'),
    (dict(num_middle_blocks=-1), 'num_middle_blocks'),
])
def test_invalid_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    xception.Xception(**kwargs)
