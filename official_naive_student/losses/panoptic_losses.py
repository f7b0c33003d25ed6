"""Panoptic-DeepLab training losses: top-k cross-entropy, weighted MSE and weighted L1.

Semantics follow DeepLab2 (`model/loss/base_loss.py`, `loss_builder.py`):
  * every per-pixel loss is multiplied by its per-pixel weight, then reduced per
    example as sum / (number of non-zero values), so zero-weight pixels (void,
    crowd, stuff for offsets) neither add loss nor count; an example without any
    weighted pixel gives 0, not NaN (`compute_average_top_k_loss`);
  * hard-pixel mining keeps the round(top_k_percent * H * W) largest weighted
    pixel losses of each example (the count is taken over all pixels, ignored ones
    included, as DeepLab2 does; ignored pixels have loss 0 and are not counted);
  * the center loss is the per-pixel MSE and the offset loss the per-pixel L1
    averaged over the (y, x) channels (DeepLab2's `mean_absolute_error`);
  * Panoptic-DeepLab weights: semantic 1 (top 20 % pixels), center 200, offset 0.01.

Distribution: the pure functions return per-example losses [B]. `PanopticLoss`
returns, per replica, the mean over that replica's examples. Under a
tf.distribute strategy with equal per-replica batches, divide by
`num_replicas_in_sync` before taking gradients (the optimizer sums gradients over
replicas), which equals sum over the global batch / global batch size, DeepLab2's
normalization. With `global_batch_size` set, the losses are instead
sum over local examples / global_batch_size, already scaled for summation.

Inputs may be bfloat16/float16 (mixed precision): everything is cast to float32.
"""

from typing import Dict, Optional

import gin
import keras
import tensorflow as tf

from official_naive_student import common


def _per_example_mean_of_nonzero(loss: tf.Tensor,
                                 top_k_percent: float = 1.0) -> tf.Tensor:
  """[B, ...] weighted pixel losses -> [B] mean of the (top-k) non-zero values."""
  if not 0.0 < top_k_percent <= 1.0:
    raise ValueError(f'top_k_percent must be in (0, 1], got {top_k_percent}.')
  num_pixels = loss.shape[1:].num_elements()  # Static k keeps XLA happy.
  loss = tf.reshape(loss, [tf.shape(loss)[0], -1] if num_pixels is None
                    else [-1, num_pixels])
  if top_k_percent < 1.0:
    if num_pixels is not None:
      k = max(int(round(top_k_percent * num_pixels)), 1)
    else:
      k = tf.maximum(tf.cast(tf.round(
          top_k_percent * tf.cast(tf.shape(loss)[1], tf.float32)), tf.int32), 1)
    loss = tf.math.top_k(loss, k=k, sorted=False).values
  count = tf.reduce_sum(tf.cast(tf.not_equal(loss, 0.0), tf.float32), axis=1)
  return tf.math.divide_no_nan(tf.reduce_sum(loss, axis=1), count)


def _pixel_weights(weights: Optional[tf.Tensor], like: tf.Tensor) -> tf.Tensor:
  """Weights [B, H, W] or [B, H, W, 1] (None: ones) as float32 shaped `like`."""
  if weights is None:
    return tf.ones_like(like)
  weights = tf.cast(weights, tf.float32)
  if weights.shape.rank == like.shape.rank + 1:
    weights = tf.squeeze(weights, axis=-1)
  return weights


def top_k_cross_entropy(labels: tf.Tensor,
                        logits: tf.Tensor,
                        weights: Optional[tf.Tensor] = None,
                        ignore_label: int = 255,
                        top_k_percent: float = 1.0) -> tf.Tensor:
  """Softmax cross-entropy with per-pixel weights and hard-pixel mining.

  Args:
    labels: [B, H, W] (or [B, H, W, 1]) int train ids; `ignore_label` is skipped.
    logits: [B, H, W, C] logits (any float dtype).
    weights: optional [B, H, W] per-pixel weights (e.g. 3 on small instances).
    ignore_label: label without loss.
    top_k_percent: fraction of each example's pixels kept, hardest first.

  Returns:
    [B] float32: mean of the kept non-zero weighted pixel losses per example.
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.int32)
  if labels.shape.rank == logits.shape.rank:
    labels = tf.squeeze(labels, axis=-1)
  valid = tf.not_equal(labels, ignore_label)
  pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.where(valid, labels, 0), logits=logits)
  pixel_loss *= _pixel_weights(weights, pixel_loss) * tf.cast(valid, tf.float32)
  return _per_example_mean_of_nonzero(pixel_loss, top_k_percent)


def weighted_mse(target: tf.Tensor, prediction: tf.Tensor,
                 weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Center-heatmap loss: per-pixel squared error, weighted, mean of non-zero.

  Args:
    target: [B, H, W, 1] (or [B, H, W]) ground-truth heatmap.
    prediction: same shape, predicted heatmap.
    weights: optional [B, H, W] weights (0 on void and crowd).

  Returns:
    [B] float32 per-example losses.
  """
  target = tf.cast(target, tf.float32)
  prediction = tf.cast(prediction, tf.float32)
  pixel_loss = tf.square(target - prediction)
  if pixel_loss.shape.rank == 4:
    pixel_loss = tf.reduce_mean(pixel_loss, axis=-1)
  return _per_example_mean_of_nonzero(
      pixel_loss * _pixel_weights(weights, pixel_loss))


def weighted_l1(target: tf.Tensor, prediction: tf.Tensor,
                weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Offset loss: per-pixel |error| averaged over (y, x), weighted, mean of non-zero.

  Args:
    target: [B, H, W, 2] ground-truth offsets in pixels.
    prediction: [B, H, W, 2] predicted offsets.
    weights: optional [B, H, W] weights (1 on instance pixels, else 0).

  Returns:
    [B] float32 per-example losses.
  """
  pixel_loss = tf.reduce_mean(
      tf.abs(tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)),
      axis=-1)
  return _per_example_mean_of_nonzero(
      pixel_loss * _pixel_weights(weights, pixel_loss))


class _PerExampleLoss(keras.layers.Layer):
  """Base of the thin loss layers: float32 compute, config from `_config`."""

  def __init__(self, **kwargs):
    kwargs.setdefault('dtype', 'float32')
    super().__init__(**kwargs)
    self._config = {}

  def get_config(self):
    config = super().get_config()
    config.update(self._config)
    return config


@keras.saving.register_keras_serializable(package='naive_student')
class TopKCrossEntropy(_PerExampleLoss):
  """Binds `top_k_cross_entropy`; call(labels, logits, weights=None) -> [B]."""

  def __init__(self, top_k_percent: float = 0.2, ignore_label: int = 255,
               **kwargs):
    super().__init__(**kwargs)
    if not 0.0 < top_k_percent <= 1.0:
      raise ValueError(f'top_k_percent must be in (0, 1], got {top_k_percent}.')
    self._config = dict(top_k_percent=top_k_percent, ignore_label=ignore_label)

  def call(self, labels, logits, weights=None):
    return top_k_cross_entropy(labels, logits, weights, **self._config)


@keras.saving.register_keras_serializable(package='naive_student')
class WeightedMSE(_PerExampleLoss):
  """Binds `weighted_mse`; call(target, prediction, weights=None) -> [B]."""

  def call(self, target, prediction, weights=None):
    return weighted_mse(target, prediction, weights)


@keras.saving.register_keras_serializable(package='naive_student')
class WeightedL1(_PerExampleLoss):
  """Binds `weighted_l1`; call(target, prediction, weights=None) -> [B]."""

  def call(self, target, prediction, weights=None):
    return weighted_l1(target, prediction, weights)


@gin.register
@keras.saving.register_keras_serializable(package='naive_student')
class PanopticLoss(_PerExampleLoss):
  """The Panoptic-DeepLab loss: weighted sum of semantic, center and offset terms.

  call(labels, outputs) reads labels common.GT_SEMANTIC, GT_SEMANTIC_WEIGHTS
  (optional), GT_CENTER_HEATMAP, GT_CENTER_WEIGHTS, GT_OFFSET, GT_OFFSET_WEIGHTS
  and outputs common.PRED_SEMANTIC_LOGITS, PRED_CENTER_HEATMAP, PRED_OFFSET, and
  returns float32 scalars {LOSS_TOTAL, LOSS_SEMANTIC, LOSS_CENTER, LOSS_OFFSET},
  each already multiplied by its weight (LOSS_TOTAL is their sum). See the module
  docstring for the scaling under tf.distribute.

  Args:
    semantic_weight: weight of the top-k cross-entropy.
    center_weight: weight of the center-heatmap MSE.
    offset_weight: weight of the offset L1.
    top_k_percent: hard-pixel fraction of the semantic loss.
    ignore_label: semantic label without loss.
    global_batch_size: if set, reduce as sum(per-example) / global_batch_size
      instead of the per-replica mean.
  """

  def __init__(self,
               semantic_weight: float = 1.0,
               center_weight: float = 200.0,
               offset_weight: float = 0.01,
               top_k_percent: float = 0.2,
               ignore_label: int = 255,
               global_batch_size: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(
        semantic_weight=semantic_weight, center_weight=center_weight,
        offset_weight=offset_weight, top_k_percent=top_k_percent,
        ignore_label=ignore_label, global_batch_size=global_batch_size)
    self.semantic_loss = TopKCrossEntropy(top_k_percent, ignore_label)
    self.center_loss = WeightedMSE()
    self.offset_loss = WeightedL1()

  def _reduce(self, per_example: tf.Tensor) -> tf.Tensor:
    if self._config['global_batch_size']:
      return (tf.reduce_sum(per_example) /
              float(self._config['global_batch_size']))
    return tf.reduce_mean(per_example)

  def call(self, labels: Dict[str, tf.Tensor],
           outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    cfg = self._config
    semantic = cfg['semantic_weight'] * self._reduce(self.semantic_loss(
        labels[common.GT_SEMANTIC], outputs[common.PRED_SEMANTIC_LOGITS],
        labels.get(common.GT_SEMANTIC_WEIGHTS)))
    center = cfg['center_weight'] * self._reduce(self.center_loss(
        labels[common.GT_CENTER_HEATMAP], outputs[common.PRED_CENTER_HEATMAP],
        labels[common.GT_CENTER_WEIGHTS]))
    offset = cfg['offset_weight'] * self._reduce(self.offset_loss(
        labels[common.GT_OFFSET], outputs[common.PRED_OFFSET],
        labels[common.GT_OFFSET_WEIGHTS]))
    return {
        common.LOSS_TOTAL: semantic + center + offset,
        common.LOSS_SEMANTIC: semantic,
        common.LOSS_CENTER: center,
        common.LOSS_OFFSET: offset,
    }
