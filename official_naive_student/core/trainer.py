"""Custom training loop on tf.distribute: resumable, summarized, NaN-safe.

The loop knows nothing about panoptic segmentation: a task gives it the model, the
losses and the per-replica datasets (see `tasks/panoptic_deeplab.py`). What it owns:
the strategy scope, the optimizer (Adam without weight decay, 'poly' schedule),
mixed precision, XLA, checkpoints every N steps with the data position, restore on
re-run, initialization from another checkpoint, TensorBoard summaries, a progress
line with steps/s and ETA, and a stop on a non-finite loss that keeps the last
good checkpoint.
"""

import os
import time
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import gin
import keras
import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import checkpoint_utils
from official_naive_student.core import distribute
from official_naive_student.core import learning_rate as lr_lib
from official_naive_student.core import progress as progress_lib

CHECKPOINT_SUBDIR = common.CHECKPOINT_SUBDIR
LOSS_KEYS = (common.LOSS_TOTAL, common.LOSS_SEMANTIC, common.LOSS_CENTER,
             common.LOSS_OFFSET)


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the last good checkpoint is kept."""


def set_mixed_precision(policy: Optional[str]) -> None:
  """'mixed_float16' (GPU), 'mixed_bfloat16' (TPU/CPU) or None (float32)."""
  keras.mixed_precision.set_global_policy(policy or 'float32')


def _remove_partial_checkpoints(directory: str) -> None:
  """Deletes `ckpt-*_temp/` folders: saves that a kill interrupted.

  TF writes a checkpoint into `<prefix>_temp/` and renames its files into place
  only when complete, so such a folder is never a checkpoint to resume from.
  """
  for folder in tf.io.gfile.glob(os.path.join(directory, '*_temp')):
    if tf.io.gfile.isdir(folder):
      logging.info('Removing %s, a checkpoint save that did not finish', folder)
      tf.io.gfile.rmtree(folder)


@gin.register
class Trainer:
  """Trains `task`'s model in `model_dir`, resuming from its latest checkpoint.

  Args:
    task: an object with `build_model()`, `build_losses()`,
      `train_dataset_fn(input_context, start_step)` (per-replica batches of
      (features, labels) dicts keyed by `common`), `input_shape` ([H, W, 3] of a
      training crop), `global_batch_size` and `write_image_summaries(model, step)`.
    model_dir: where checkpoints and summaries go.
    num_steps: total training steps.
    strategy: a built strategy (default: `distribute.build_strategy()`).
    learning_rate: base learning rate of the poly schedule.
    warmup_steps: linear warm-up steps.
    poly_power: power of the poly schedule.
    checkpoint_every: steps between checkpoints.
    summary_every: steps between scalar summaries (and the loop's inner length).
    image_summary_every: steps between sample-prediction image summaries (0: off).
    max_checkpoints: checkpoints kept.
    mixed_precision: None, 'mixed_float16' or 'mixed_bfloat16'.
    jit_compile: compile the replica step with XLA.
    init_checkpoint: checkpoint (or folder) to initialize from when `model_dir`
      has none: a previous Student, a Teacher, or an ImageNet backbone.
    init_skip_prefixes: keys under the model not taken from `init_checkpoint`.
    clip_gradient_norm: global-norm clipping (0: off).
    seed: seeds Python, NumPy and TF before the model is built, so weight
      initialization (hence a whole run on one device) is repeatable; None
      leaves the global seeds alone.
  """

  def __init__(self, task, model_dir: str, num_steps: int = 1000,
               strategy: Optional[tf.distribute.Strategy] = None,
               learning_rate: float = 1e-3, warmup_steps: int = 0,
               poly_power: float = 0.9, checkpoint_every: int = 500,
               summary_every: int = 50, image_summary_every: int = 0,
               max_checkpoints: int = 3, mixed_precision: Optional[str] = None,
               jit_compile: bool = False,
               init_checkpoint: Optional[str] = None,
               init_skip_prefixes: Sequence[str] = (),
               clip_gradient_norm: float = 0.0,
               seed: Optional[int] = 0):
    self.task = task
    self.model_dir = model_dir
    self.num_steps = num_steps
    self.checkpoint_every = checkpoint_every
    self.summary_every = max(1, summary_every)
    self.image_summary_every = image_summary_every
    self.jit_compile = jit_compile
    self.init_checkpoint = init_checkpoint
    self.init_skip_prefixes = tuple(init_skip_prefixes)
    self.clip_gradient_norm = clip_gradient_norm
    set_mixed_precision(mixed_precision)
    if seed is not None:
      keras.utils.set_random_seed(seed)
    self.strategy = strategy or distribute.build_strategy()
    self.is_chief = distribute.is_chief(self.strategy)
    with self.strategy.scope():
      self.model = task.build_model()
      self.model(tf.zeros([1, *task.input_shape]), training=False)
      schedule = lr_lib.PolyLearningRate(
          base_learning_rate=learning_rate, decay_steps=num_steps,
          power=poly_power, warmup_steps=warmup_steps)
      optimizer = keras.optimizers.Adam(learning_rate=schedule)
      if mixed_precision == 'mixed_float16':
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      self.optimizer.build(self.model.trainable_variables)
      self.loss_fn = task.build_losses()
    # Keras keeps dropout / drop-path RNG states outside the layers' checkpoint
    # children; saving them makes a resumed run draw the same masks.
    seed_states = [v for v in self.model.variables
                   if 'seed_generator_state' in v.path]
    self.checkpoint = tf.train.Checkpoint(model=self.model,
                                          optimizer=self.optimizer,
                                          seed_states=seed_states)
    directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
    if not self.is_chief:  # Other workers write to a scratch folder.
      resolver = self.strategy.cluster_resolver
      directory = os.path.join(model_dir, 'workers',
                               f'{resolver.task_type}_{resolver.task_id}')
    else:
      _remove_partial_checkpoints(directory)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=max_checkpoints,
        step_counter=self.optimizer.iterations)

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> Optional[checkpoint_utils.RestoreReport]:
    """Resumes from `model_dir`, else initializes from `init_checkpoint`."""
    latest = tf.train.latest_checkpoint(
        os.path.join(self.model_dir, CHECKPOINT_SUBDIR))
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info('Resumed from %s at step %d', latest, self.step)
      return None
    if self.init_checkpoint:
      return checkpoint_utils.restore_matching(
          self.init_checkpoint, self.model, prefix=common.CKPT_MODEL,
          skip_prefixes=self.init_skip_prefixes)
    return None

  def _replica_step(self, features: Dict[str, tf.Tensor],
                    labels: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    num_replicas = self.strategy.num_replicas_in_sync
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      outputs = self.model(features[common.IMAGE], training=True)
      losses = self.loss_fn(labels, outputs)
      # Per-replica mean over its examples; the optimizer sums over replicas.
      loss = tf.cast(losses[common.LOSS_TOTAL], tf.float32) / num_replicas
      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
        loss = self.optimizer.scale_loss(loss)
    grads = tape.gradient(loss, variables)
    if self.clip_gradient_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, self.clip_gradient_norm)
    self.optimizer.apply_gradients(zip(grads, variables))
    return {k: tf.cast(losses[k], tf.float32) for k in LOSS_KEYS}

  def _make_train_loop(self) -> Callable:
    replica_step = tf.function(self._replica_step, jit_compile=self.jit_compile)
    strategy = self.strategy

    @tf.function
    def train_loop(iterator, num_steps):
      totals = {k: tf.constant(0.0) for k in LOSS_KEYS}
      for _ in tf.range(num_steps):
        per_replica = strategy.run(replica_step, args=next(iterator))
        totals = {k: totals[k] + strategy.reduce(
            tf.distribute.ReduceOp.MEAN, per_replica[k], axis=None)
                  for k in LOSS_KEYS}
      return {k: v / tf.cast(num_steps, tf.float32) for k, v in totals.items()}

    return train_loop

  def _save(self) -> None:
    self.manager.save(checkpoint_number=self.optimizer.iterations)
    if not self.is_chief:  # Scratch copies exist only for the collective save.
      tf.io.gfile.rmtree(self.manager.directory)

  def train(self) -> Dict[str, float]:
    """Runs until `num_steps`; returns the last summary's mean losses."""
    self.restore()
    start = self.step
    if start >= self.num_steps:
      logging.info('Training already finished at step %d', start)
      return {}
    dataset = self.strategy.distribute_datasets_from_function(
        lambda ctx: self.task.train_dataset_fn(ctx, start_step=start))
    iterator = iter(dataset)
    train_loop = self._make_train_loop()
    writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, 'train'))
              if self.is_chief else tf.summary.create_noop_writer())
    progress = progress_lib.Progress(self.num_steps, unit='steps', start=start,
                                     name='train')
    losses = {}
    last_saved = start
    while self.step < self.num_steps:
      chunk = min(self.summary_every - self.step % self.summary_every,
                  self.num_steps - self.step)
      if self.checkpoint_every:
        chunk = min(chunk, self.checkpoint_every - self.step % self.checkpoint_every)
      began = time.monotonic()
      result = train_loop(iterator, tf.constant(chunk))
      losses = {k: float(v) for k, v in result.items()}
      seconds = time.monotonic() - began
      if not all(np.isfinite(v) for v in losses.values()):
        raise NonFiniteLossError(
            f'non-finite loss {losses} in steps {self.step - chunk + 1}..'
            f'{self.step}; last good checkpoint: step {last_saved} in '
            f'{self.manager.directory}')
      step = self.step
      with writer.as_default(step=step):
        for key, value in losses.items():
          tf.summary.scalar(f'losses/{key}', value)
        tf.summary.scalar('learning_rate',
                          float(self.optimizer.learning_rate))
        tf.summary.scalar('steps_per_second', chunk / seconds)
        tf.summary.scalar('examples_per_second',
                          chunk * self.task.global_batch_size / seconds)
        if (self.image_summary_every and self.is_chief and
            step % self.image_summary_every < chunk):
          self.task.write_image_summaries(self.model, step)
      progress.update(chunk, extra=f'loss {losses[common.LOSS_TOTAL]:.4f}')
      if self.checkpoint_every and step % self.checkpoint_every == 0:
        self._save()
        last_saved = step
    if last_saved != self.step:
      self._save()
    writer.flush()
    return losses
