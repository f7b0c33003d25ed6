"""Class-balanced pseudo-labels: the labels' class shares aligned to the human labels'.

A Teacher trained on few frames under-predicts small, thin classes (poles,
traffic lights and signs cover a few pixels each) and fattens large ones, so
its hard labels drop those classes entirely and a Student trained on them
never predicts them. Beyond the paper (whose labels are the plain argmax), this
adds one log-bias per class to the Teacher's TTA-averaged probabilities before
the argmax, fitted on a sample of the unlabeled frames so that each class's
share of the labeled pixels matches its share in the human labels: the
distribution alignment of ReMixMatch (Berthelot et al., ICLR 2020) applied to
hard labels, in the spirit of class-balanced self-training (Zou et al., ECCV
2018). Classes absent from the human labels keep a zero bias.

Everything here is pure (arrays in, arrays out) except `label_class_shares`,
which decodes the human labels.
"""

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode

# Bounds of a fitted log-bias: a class is never boosted or damped by more than
# e^3 (20x) in probability, so a class seen in few human-labeled pixels cannot
# take over the labels.
MAX_ABS_LOG_BIAS = 3.0


def label_class_shares(records: Sequence[cityscapes_files.Record],
                       dataset: datasets.DatasetInfo) -> np.ndarray:
  """[C] float64: each class's share of the non-void pixels of the human labels.

  Raises:
    ValueError: no record carries a label, or the labels are all void.
  """
  counts = np.zeros(dataset.num_classes, np.int64)
  labeled = [r for r in records if r.label_format is not None]
  if not labeled:
    raise ValueError(f'class balance: none of the {len(records)} records '
                     'carries a human label to take class shares from')
  for record in labeled:
    semantic = decode.decode_label(record, dataset) // dataset.label_divisor
    semantic = semantic[semantic < dataset.num_classes]
    counts += np.bincount(semantic.ravel(), minlength=dataset.num_classes)
  if not counts.sum():
    raise ValueError(f'class balance: the {len(labeled)} human labels '
                     f'(e.g. {labeled[0].label_path}) are all void')
  return counts / counts.sum()


def sample_log_probs(probs: np.ndarray, num_pixels: int,
                     rng: np.random.Generator,
                     exclude: Optional[np.ndarray] = None) -> np.ndarray:
  """[num_pixels, C] log-probabilities of random pixels of one frame.

  Args:
    probs: [H, W, C] class probabilities.
    num_pixels: pixels to draw (with replacement).
    rng: the random generator (seeded by the caller, for reproducible fits).
    exclude: optional [H, W] bool, True where a pixel must not be drawn
      (the ego car, which the labels void anyway).
  """
  flat = probs.reshape(-1, probs.shape[-1])
  candidates = np.arange(flat.shape[0])
  if exclude is not None:
    candidates = np.flatnonzero(~np.asarray(exclude).ravel())
  if not candidates.size:
    return np.zeros((0, flat.shape[1]), np.float32)
  picked = flat[rng.choice(candidates, size=num_pixels)]
  return np.log(np.maximum(picked.astype(np.float32), 1e-8))


def label_shares(log_probs: np.ndarray, log_bias: np.ndarray) -> np.ndarray:
  """[C]: each class's share of argmax(log_probs + log_bias) over the pixels."""
  labels = np.argmax(log_probs + log_bias, axis=-1)
  return np.bincount(labels, minlength=log_probs.shape[-1]) / max(len(labels), 1)


def fit_log_bias(log_probs: np.ndarray, target_shares: np.ndarray,
                 iterations: int = 50, step: float = 0.1) -> np.ndarray:
  """[C] log-biases such that argmax(log_probs + bias) has `target_shares`.

  A damped fixed-point iteration on log shares: each step moves a class's
  bias by `step` times log(target / current share). Classes with a zero
  target are left at 0 (the human labels say nothing about them); biases stay
  within +-MAX_ABS_LOG_BIAS and are rounded to 1e-4, so that shards and
  resumed runs that fit on the same frames record the same values.

  Args:
    log_probs: [N, C] log-probabilities of sampled pixels.
    target_shares: [C] shares to reach (e.g. `label_class_shares`).
    iterations: update steps.
    step: damping of each update (1 overshoots: classes compete for pixels).
  """
  target = np.asarray(target_shares, np.float64)
  if log_probs.ndim != 2 or log_probs.shape[1] != target.shape[0]:
    raise ValueError(f'fit_log_bias: log_probs {log_probs.shape} and '
                     f'{target.shape[0]} target shares disagree')
  fitted = target > 0
  bias = np.zeros(target.shape, np.float64)
  floor = 1e-6
  for _ in range(iterations):
    shares = label_shares(log_probs, bias)
    update = np.log(target + floor) - np.log(shares + floor)
    bias = np.where(fitted, bias + step * update, 0.0)
    bias = np.where(fitted, bias - bias[fitted].mean(), 0.0)
    bias = np.clip(bias, -MAX_ABS_LOG_BIAS, MAX_ABS_LOG_BIAS)
  return np.round(bias, 4).astype(np.float32)


def apply_log_bias(probs: tf.Tensor, log_bias: Sequence[float]) -> tf.Tensor:
  """[..., C] probabilities reweighted by exp(log_bias), renormalized."""
  weighted = probs * tf.exp(tf.constant(log_bias, probs.dtype))
  return weighted / tf.reduce_sum(weighted, axis=-1, keepdims=True)


def with_log_bias(tta_fn: Callable, log_bias: Sequence[float]) -> Callable:
  """Wraps a TTA `fn(model_fn, images) -> outputs` to reweight its probabilities.

  The post-processor then takes its argmax (and instance scores) from the
  balanced probabilities, and a confidence threshold reads them too.
  """
  def balanced(model_fn, images) -> Dict[str, tf.Tensor]:
    outputs = dict(tta_fn(model_fn, images))
    outputs[common.PRED_SEMANTIC_PROBS] = apply_log_bias(
        outputs[common.PRED_SEMANTIC_PROBS], log_bias)
    return outputs

  return balanced
