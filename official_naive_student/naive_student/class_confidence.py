"""Per-class confidence masks: void each class's least confident pseudo-labeled pixels.

One confidence threshold for all classes (`pseudo_label.confidence_threshold`)
voids mostly the thin and rare classes, which a Teacher is never very sure of:
at 0.7 the labels of benchmarks/RESULTS.md section 0r keep 5-8% of their
person pixels and under 1% of their bicycle pixels, against 94% of their
road. As in class-balanced self-training
(Zou et al., ECCV 2018), each class here gets its own threshold instead: the
`quantile` of the Teacher's confidence over the sampled pixels it labels with
that class, so every class keeps about the same share (1 - quantile) of its
pixels and loses its least certain ones, mostly at object boundaries. Beyond
the paper, whose labels are hard everywhere.

Pure functions: sampled log-probabilities in, thresholds out; thresholds and
predictions in, masked labels out.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf


def fit_class_thresholds(log_probs: np.ndarray, quantile: float) -> np.ndarray:
  """[C] per-class thresholds on the top class probability.

  Args:
    log_probs: [N, C] (unnormalized) log-probabilities of sampled pixels, as
      the labels are made from them (class-balance biases added).
    quantile: in [0, 1); a class's threshold is this quantile of the top
      probability over the sampled pixels whose argmax is that class.

  Returns:
    [C] float32, rounded to 1e-4 (so resumed runs record the same values);
    0 for classes no sampled pixel takes, whose pixels are never voided.
  """
  if not 0.0 <= quantile < 1.0:
    raise ValueError(f'class confidence quantile must be in [0, 1), got '
                     f'{quantile}')
  if log_probs.ndim != 2 or not log_probs.shape[0]:
    raise ValueError(f'fit_class_thresholds: needs [N>0, C] log-probabilities, '
                     f'got shape {log_probs.shape}')
  probs = np.exp(log_probs - log_probs.max(axis=-1, keepdims=True))
  probs /= probs.sum(axis=-1, keepdims=True)
  labels = np.argmax(probs, axis=-1)
  confidence = probs.max(axis=-1)
  thresholds = np.zeros(log_probs.shape[1], np.float64)
  for c in np.unique(labels):
    thresholds[c] = np.quantile(confidence[labels == c], quantile)
  return np.round(thresholds, 4).astype(np.float32)


def mask_unconfident(panoptic: tf.Tensor, probs: tf.Tensor,
                     thresholds: Sequence[float], void_id: int) -> tf.Tensor:
  """`panoptic` [..., H, W] with void where the top probability of `probs`
  [..., H, W, C] is below the threshold of its argmax class ([C])."""
  thresholds = tf.constant(thresholds, probs.dtype)
  confidence = tf.reduce_max(probs, axis=-1)
  needed = tf.gather(thresholds, tf.argmax(probs, axis=-1))
  return tf.where(confidence < needed, tf.cast(void_id, panoptic.dtype),
                  panoptic)
