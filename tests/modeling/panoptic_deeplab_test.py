"""Tests for PanopticDeepLab and its presets: output contract, gradients, restores."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import checkpoint_utils
from official_naive_student.modeling import panoptic_deeplab
from official_naive_student.modeling import presets

_NUM_CLASSES = 5
_KEYS = (common.PRED_SEMANTIC_LOGITS, common.PRED_CENTER_HEATMAP,
         common.PRED_OFFSET)


def _tiny(preset='tiny', **overrides):
  return presets.build_panoptic_deeplab(
      preset, num_classes=_NUM_CLASSES, sync_bn=False, **overrides)


def _images(height, width, seed=0):
  return tf.random.stateless_uniform([2, height, width, 3], seed=[seed, 5],
                                     minval=0, maxval=255)


@pytest.mark.parametrize('preset', ['tiny', 'tiny_xception'])
@pytest.mark.parametrize('output_stride, height, width', [
    (8, 33, 47), (16, 65, 129), (32, 40, 72)])
def test_outputs_at_input_resolution(preset, output_stride, height, width):
  model = _tiny(preset, output_stride=output_stride)
  outputs = model(_images(height, width), training=False)
  assert set(outputs) == set(_KEYS)
  assert outputs[common.PRED_SEMANTIC_LOGITS].shape == (
      2, height, width, _NUM_CLASSES)
  assert outputs[common.PRED_CENTER_HEATMAP].shape == (2, height, width, 1)
  assert outputs[common.PRED_OFFSET].shape == (2, height, width, 2)
  assert all(v.dtype == tf.float32 for v in outputs.values())
  assert model.output_stride == output_stride


def test_offsets_are_in_input_pixels():
  # Offsets leave the head in stride-4 pixels; the model multiplies them by
  # (H - 1) / (h - 1) = 4 on a 65 x 129 image (17 x 33 map).
  model = _tiny()
  images = _images(65, 129)
  outputs = model(images, training=False)
  features = model.backbone(panoptic_deeplab.normalize_images(images))
  raw = model.offset_head(model.instance_decoder(features))
  assert raw.shape[1:3] == (17, 33)
  np.testing.assert_allclose(outputs[common.PRED_OFFSET][:, ::4, ::4].numpy(),
                             4.0 * raw.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('preset', ['tiny', 'tiny_xception'])
def test_gradients_reach_every_trainable_variable(preset):
  # Zero-initialized residual gammas would zero the gradients of the convs
  # before them at initialization, hiding whether those are connected.
  model = _tiny(preset, backbone_kwargs={'zero_init_residual': False}
                if preset == 'tiny' else {})
  images = _images(33, 65)
  with tf.GradientTape() as tape:
    outputs = model(images, training=True)
    loss = sum(tf.reduce_mean(tf.square(v - 0.5)) for v in outputs.values())
  grads = tape.gradient(loss, model.trainable_variables)
  missing = [v.path for v, g in zip(model.trainable_variables, grads)
             if g is None or not np.any(g.numpy())]
  assert not missing, missing


def test_checkpoint_round_trip_reproduces_outputs(tmp_path):
  images = _images(33, 65)
  model = _tiny()
  expected = model(images, training=False)
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
  restored = panoptic_deeplab.PanopticDeepLab.from_config(model.get_config())
  restored(images, training=False)
  tf.train.Checkpoint(model=restored).read(
      path).assert_existing_objects_matched()
  actual = restored(images, training=False)
  for key in _KEYS:
    np.testing.assert_array_equal(actual[key].numpy(), expected[key].numpy())


def test_partial_restore_without_semantic_last_layer(tmp_path):
  # Fine-tuning to another class count keeps everything but the last layer.
  images = _images(33, 65)
  source = _tiny()
  source(images)
  path = tf.train.Checkpoint(model=source).write(str(tmp_path / 'ckpt'))
  target = presets.build_panoptic_deeplab('tiny', num_classes=3, sync_bn=False)
  target(images)
  report = checkpoint_utils.restore_matching(path, target)
  assert report.shape_mismatch and all(
      'semantic_head/final_conv' in p for p in report.shape_mismatch)
  assert not report.missing_in_checkpoint
  np.testing.assert_array_equal(
      target.center_head.final_conv.kernel.numpy(),
      source.center_head.final_conv.kernel.numpy())


def test_model_config_round_trip():
  model = _tiny('tiny_xception')
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(model))
  assert isinstance(restored, panoptic_deeplab.PanopticDeepLab)
  assert restored.get_config() == model.get_config()


def test_preset_options_merge_and_validate():
  options = presets.preset_options(
      'panoptic_deeplab_wr41', backbone_kwargs={'multi_grid': (1, 2, 4)})
  assert options['backbone_kwargs']['depth'] == 'wide_resnet41'
  assert options['backbone_kwargs']['multi_grid'] == (1, 2, 4)
  assert options['decoder_conv_type'] == presets.STANDARD_CONV
  assert (presets.preset_options('panoptic_deeplab_x71')['aspp_conv_type']
          == presets.SEPARABLE_CONV)
  with pytest.raises(ValueError, match='Unknown preset'):
    presets.preset_options('resnet50')
  with pytest.raises(ValueError, match='decoder_chanels'):
    presets.preset_options('tiny', decoder_chanels=3)
  with pytest.raises(ValueError, match='decoder_conv_type'):
    presets.preset_options('tiny', decoder_conv_type='separable')
