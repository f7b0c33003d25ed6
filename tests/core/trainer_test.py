"""Trainer: resume after a kill equals an uninterrupted run, NaN stop, XLA, init."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import checkpoint_utils
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.losses import panoptic_losses

H, W, C = 16, 16, 3


class ToyModel(keras.Model):
  """Raw Panoptic-DeepLab outputs from two convolutions and batch norm."""

  def __init__(self, num_classes=C, **kwargs):
    super().__init__(**kwargs)
    self.conv = keras.layers.Conv2D(8, 3, padding='same', name='conv')
    self.norm = keras.layers.BatchNormalization(synchronized=True, name='bn')
    self.dropout = keras.layers.Dropout(0.5, seed=1)
    self.head = keras.layers.Conv2D(num_classes + 3, 1, name='head')

  def call(self, images, training=None):
    x = tf.nn.relu(self.norm(self.conv(images / 255.0), training=training))
    x = self.head(self.dropout(x, training=training))
    return {common.PRED_SEMANTIC_LOGITS: x[..., :-3],
            common.PRED_CENTER_HEATMAP: x[..., -3:-2],
            common.PRED_OFFSET: x[..., -2:]}


class ToyTask:
  """Random but seeded examples; `start_step` skips what earlier steps used."""

  input_shape = (H, W, 3)
  global_batch_size = 2

  def __init__(self, nan_after_step=None):
    self.nan_after_step = nan_after_step

  def build_model(self):
    return ToyModel()

  def build_losses(self):
    loss = panoptic_losses.PanopticLoss(ignore_label=255)
    if self.nan_after_step is None:
      return loss
    nan_after = self.nan_after_step

    def nan_loss(labels, outputs):
      losses = loss(labels, outputs)
      bad = labels['step'][0] >= nan_after
      return {k: tf.where(bad, np.nan, v) if k == common.LOSS_TOTAL else v
              for k, v in losses.items()}
    return nan_loss

  def train_dataset_fn(self, input_context=None, start_step=0):
    def example(i):
      seed = tf.stack([tf.constant(7, tf.int64), i])
      image = tf.random.stateless_uniform([H, W, 3], seed, 0, 255)
      semantic = tf.random.stateless_uniform([H, W], seed + 1, 0, C, tf.int32)
      labels = {
          common.GT_SEMANTIC: semantic,
          common.GT_SEMANTIC_WEIGHTS: tf.ones([H, W]),
          common.GT_CENTER_HEATMAP: tf.random.stateless_uniform(
              [H, W, 1], seed + 2),
          common.GT_CENTER_WEIGHTS: tf.ones([H, W]),
          common.GT_OFFSET: tf.random.stateless_normal([H, W, 2], seed + 3),
          common.GT_OFFSET_WEIGHTS: tf.ones([H, W]),
          'step': i // self.global_batch_size,
      }
      return {common.IMAGE: image}, labels
    ds = tf.data.Dataset.range(start_step * self.global_batch_size, 10**6)
    return ds.map(example).batch(self.global_batch_size, drop_remainder=True)

  def write_image_summaries(self, model, step):
    del model, step


def _weights(trainer):
  return [v.numpy() for v in trainer.model.weights]


def _trainer(model_dir, task=None, **kwargs):
  kwargs = {'num_steps': 6, 'checkpoint_every': 3, 'summary_every': 3,
            'learning_rate': 1e-2, **kwargs}
  return trainer_lib.Trainer(task or ToyTask(), str(model_dir), **kwargs)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
  tf.keras.utils.set_random_seed(0)
  full = _trainer(tmp_path / 'full')
  full.train()
  expected = _weights(full)

  tf.keras.utils.set_random_seed(0)
  first = _trainer(tmp_path / 'killed', num_steps=6)
  # 'Kill' after the checkpoint at step 3: train a 3-step job in the same dir.
  first.num_steps = 3
  first.train()
  assert first.step == 3
  tf.keras.utils.set_random_seed(123)  # A fresh process: other random init.
  # A save killed half-way leaves its temporary folder behind.
  partial = tmp_path / 'killed' / trainer_lib.CHECKPOINT_SUBDIR / 'ckpt-6_temp'
  partial.mkdir()
  (partial / 'part-00000-of-00001.data-00000-of-00001').write_bytes(b'x')
  resumed = _trainer(tmp_path / 'killed')
  assert not partial.exists()
  resumed.train()
  assert resumed.step == 6
  for a, b in zip(expected, _weights(resumed)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # Re-running a finished job does nothing.
  again = _trainer(tmp_path / 'killed')
  assert again.train() == {}
  assert again.step == 6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  trainer = _trainer(tmp_path, task=ToyTask(nan_after_step=4), num_steps=9)
  with pytest.raises(trainer_lib.NonFiniteLossError, match='step 3'):
    trainer.train()
  latest = tf.train.latest_checkpoint(os.path.join(str(tmp_path), 'checkpoints'))
  assert latest.endswith('ckpt-3')


def test_training_step_compiles_with_xla(tmp_path):
  trainer = _trainer(tmp_path, num_steps=2, summary_every=2, jit_compile=True)
  losses = trainer.train()
  assert trainer.step == 2
  assert np.isfinite(losses[common.LOSS_TOTAL])


def test_mixed_precision_float16_trains(tmp_path):
  try:
    trainer = _trainer(tmp_path, num_steps=2, summary_every=2,
                       mixed_precision='mixed_float16')
    losses = trainer.train()
  finally:
    trainer_lib.set_mixed_precision(None)
  assert np.isfinite(losses[common.LOSS_TOTAL])
  assert trainer.model.conv.compute_dtype == 'float16'


def test_init_checkpoint_reports_restored_and_missing(tmp_path):
  source = _trainer(tmp_path / 'source', num_steps=3)
  source.train()

  class WiderTask(ToyTask):
    def build_model(self):
      return ToyModel(num_classes=5)

  target = _trainer(tmp_path / 'target', task=WiderTask(),
                    init_checkpoint=str(tmp_path / 'source' / 'checkpoints'))
  report = target.restore()
  assert isinstance(report, checkpoint_utils.RestoreReport)
  assert any('conv' in k for k in report.restored)
  assert any('head' in k for k in report.shape_mismatch)
  np.testing.assert_array_equal(target.model.conv.kernel.numpy(),
                                source.model.conv.kernel.numpy())


class NestedToyModel(ToyModel):
  """ToyModel whose conv sits two layers deep, deeper than the optimizer's path."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    inner = keras.Sequential([keras.layers.Conv2D(8, 3, padding='same')])
    self.block = keras.Sequential([inner], name='block')
    self.conv = self.block

  def call(self, images, training=None):
    return super().call(images, training=training)


def test_init_checkpoint_restores_variables_the_optimizer_also_tracks(tmp_path):
  # A trainer's checkpoint saves each trainable variable once, under its
  # shortest path, which for nested layers runs through the optimizer.
  class NestedTask(ToyTask):
    def build_model(self):
      return NestedToyModel()

  source = _trainer(tmp_path / 'source', task=NestedTask(), num_steps=2)
  source.train()
  target = _trainer(tmp_path / 'target', task=NestedTask(),
                    init_checkpoint=str(tmp_path / 'source' / 'checkpoints'))
  report = target.restore()
  assert not report.missing_in_checkpoint and not report.shape_mismatch
  assert not report.unused_in_checkpoint
  pairs = [(a, b) for a, b in zip(source.model.variables, target.model.variables)
           if 'seed_generator' not in a.path]  # RNG state is not a weight.
  assert len(pairs) == 8  # Nested conv, BN (4), head: all restored.
  for a, b in pairs:
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_seed_makes_initial_weights_repeatable(tmp_path):
  first = _weights(_trainer(tmp_path / 'a', seed=3))
  second = _weights(_trainer(tmp_path / 'b', seed=3))
  other = _weights(_trainer(tmp_path / 'c', seed=4))
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, c) for a, c in zip(first, other))
