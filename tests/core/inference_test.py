"""core/inference: one way to find a checkpoint, restore a model and run it."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import inference
from official_naive_student.modeling import presets


def _model(channels: int = 3) -> keras.Model:
  inputs = keras.Input((None, None, 3))
  outputs = keras.layers.Conv2D(channels, 1, name='conv')(inputs)
  return keras.Model(inputs, outputs)


def _save(model_dir: str, model: keras.Model) -> str:
  """A trainer-like checkpoint (`model=`) in model_dir/checkpoints/."""
  model(tf.zeros([1, 4, 4, 3]))
  checkpoint = tf.train.Checkpoint(**{common.CKPT_MODEL: model})
  return tf.train.CheckpointManager(
      checkpoint, os.path.join(model_dir, common.CHECKPOINT_SUBDIR),
      max_to_keep=2).save()


def test_a_prefix_its_folder_and_its_model_dir_name_the_same_checkpoint(
    tmp_path):
  model_dir = str(tmp_path / 'run')
  _save(model_dir, _model())
  prefix = _save(model_dir, _model())  # The latest of two.
  for path in (prefix, os.path.dirname(prefix), model_dir):
    assert inference.resolve_checkpoint(path) == prefix
  for missing in (str(tmp_path / 'nothing'), prefix + '-not'):
    with pytest.raises(FileNotFoundError, match='no checkpoint'):
      inference.resolve_checkpoint(missing)
  # A model-zoo folder without the `checkpoint` state file: its one index.
  os.remove(os.path.join(os.path.dirname(prefix), 'checkpoint'))
  for other in tf.io.gfile.glob(os.path.join(os.path.dirname(prefix), '*')):
    if not other.startswith(prefix):
      os.remove(other)
  assert inference.resolve_checkpoint(os.path.dirname(prefix)) == prefix


def test_models_are_built_in_the_named_precision_only(tmp_path):
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    model = inference.build_model(_model, precision='float32')
    assert keras.mixed_precision.global_policy().name == 'mixed_bfloat16'
  finally:
    keras.mixed_precision.set_global_policy('float32')
  assert model.get_layer('conv').compute_dtype == 'float32'
  model = inference.build_model(_model, precision='mixed_bfloat16')
  assert model.get_layer('conv').compute_dtype == 'bfloat16'
  assert keras.mixed_precision.global_policy().name == 'float32'


def test_restore_needs_every_variable_of_the_model(tmp_path):
  saved = _model()
  prefix = _save(str(tmp_path), saved)
  model, used = inference.load_model(_model, str(tmp_path))
  assert used == prefix
  assert all((a.numpy() == b.numpy()).all()
             for a, b in zip(model.weights, saved.weights))
  with pytest.raises(Exception):  # Another architecture: not silently random.
    inference.load_model(lambda: _model(channels=5), prefix)


def test_tta_at_identity_is_the_plain_model_only_when_asked():
  assert inference.make_tta_fn((1.0,), False, plain_at_identity=True) is None
  assert inference.make_tta_fn((1.0,), True, plain_at_identity=True)
  assert inference.make_tta_fn((1.0,), False) is not None


def test_a_float32_model_stays_float32_under_a_mixed_global_policy(tmp_path):
  """A Trainer of the same process leaves the global policy at bf16 (a chain
  resumed after its Teacher stage does not): restoring and running the
  Teacher must not depend on it, layers built at their first call included."""
  def build():
    return presets.build_panoptic_deeplab('tiny', num_classes=3, sync_bn=False)
  prefix = _save(str(tmp_path), inference.build_model(build))
  images = tf.random.uniform([1, 33, 65, 3], 0, 255, seed=1)
  expected, _ = inference.load_model(build, prefix)
  expected = expected(images, training=False)
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    model, _ = inference.load_model(build, prefix, precision='float32')
    outputs = model(images, training=False)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  for key, value in expected.items():
    assert outputs[key].dtype == tf.float32
    np.testing.assert_allclose(outputs[key].numpy(), value.numpy(), atol=1e-5)
