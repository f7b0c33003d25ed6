"""Random masks that differ across the replicas of a `tf.distribute` step.

Keras 3 layers draw their seeds from a `SeedGenerator`, whose state is one
variable; under `MirroredStrategy` / `TPUStrategy` every replica reads the same
(mirrored) state, so every replica draws the same dropout and drop-path masks
(the paper trains on 32 TPU cores: 32 copies of one mask pattern per step).
`replica_seed` folds the replica's index into the seed; with one replica it is
the generator's seed unchanged.
"""

from typing import Optional

import keras
import tensorflow as tf


def replica_seed(seed_generator: keras.random.SeedGenerator) -> tf.Tensor:
  """The generator's next seed ([2] int64), distinct for each replica."""
  seed = tf.cast(seed_generator.next(), tf.int64)
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return seed
  # A hash, not an offset: the generator's state advances by [0, 1] a step,
  # so seed + [0, replica] would replay one replica's masks on the next.
  return tf.random.experimental.stateless_fold_in(
      seed, tf.cast(context.replica_id_in_sync_group, tf.int64))


def uniform(shape, seed_generator: keras.random.SeedGenerator,
            dtype) -> tf.Tensor:
  """U[0, 1) noise of `shape` in `dtype`, drawn in float32 (any policy)."""
  noise = tf.random.stateless_uniform(shape, seed=replica_seed(seed_generator),
                                      dtype=tf.float32)
  return tf.cast(noise, dtype)


@keras.saving.register_keras_serializable(package='naive_student')
class Dropout(keras.layers.Layer):
  """`keras.layers.Dropout` (element-wise, inverted scaling), masks per replica.

  Args:
    rate: float in [0, 1). Fraction of the inputs to drop while training.
    seed: int or None. Seed of the layer's random generator.
  """

  def __init__(self, rate: float, seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f'Dropout rate must be in [0, 1), got {rate}.')
    self.rate = rate
    self.seed = seed
    self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

  def call(self, x, training=None):
    if not training or self.rate == 0.0:
      return x
    keep = uniform(tf.shape(x), self.seed_generator, x.dtype) >= self.rate
    return x * tf.cast(keep, x.dtype) / tf.cast(1.0 - self.rate, x.dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'seed': self.seed}
