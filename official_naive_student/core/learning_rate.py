"""The 'poly' learning-rate schedule with optional linear warm-up (DeepLab's default)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package='naive_student')
class PolyLearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """lr(step) = base * (1 - step / decay_steps) ** power after `warmup_steps`.

  During warm-up the rate rises linearly from `warmup_start_ratio * base` to
  `base`. The rate never goes below `end_learning_rate`.
  """

  def __init__(self, base_learning_rate: float = 1e-3, decay_steps: int = 1000,
               power: float = 0.9, end_learning_rate: float = 0.0,
               warmup_steps: int = 0, warmup_start_ratio: float = 0.0):
    self.base_learning_rate = base_learning_rate
    self.decay_steps = decay_steps
    self.power = power
    self.end_learning_rate = end_learning_rate
    self.warmup_steps = warmup_steps
    self.warmup_start_ratio = warmup_start_ratio

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    base = tf.constant(self.base_learning_rate, tf.float32)
    fraction = tf.minimum(step / float(max(self.decay_steps, 1)), 1.0)
    poly = (base - self.end_learning_rate) * (1.0 - fraction) ** self.power
    poly += self.end_learning_rate
    if self.warmup_steps > 0:
      ratio = self.warmup_start_ratio + (1.0 - self.warmup_start_ratio) * (
          step / float(self.warmup_steps))
      poly = tf.where(step < self.warmup_steps, base * ratio, poly)
    return poly

  def get_config(self):
    return dict(base_learning_rate=self.base_learning_rate,
                decay_steps=self.decay_steps, power=self.power,
                end_learning_rate=self.end_learning_rate,
                warmup_steps=self.warmup_steps,
                warmup_start_ratio=self.warmup_start_ratio)
