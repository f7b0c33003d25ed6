"""class_confidence: per-class thresholds keep each class's most confident pixels."""

import numpy as np
import pytest
import tensorflow as tf

from official_naive_student.naive_student import class_confidence


def _log_probs(top_class, confidence, num_classes=4):
  """[N, C] log-probabilities whose argmax is `top_class` at `confidence`."""
  n = len(top_class)
  probs = np.full((n, num_classes), 0.0)
  rest = (1 - np.asarray(confidence)) / (num_classes - 1)
  probs[:] = rest[:, None]
  probs[np.arange(n), top_class] = confidence
  return np.log(probs) + 3.0  # Unnormalized: a shift must not matter.


def test_each_class_keeps_its_share_of_pixels_whatever_its_confidence():
  rng = np.random.default_rng(0)
  sure = rng.uniform(0.8, 1.0, 4000)      # e.g. road
  unsure = rng.uniform(0.3, 0.5, 1000)    # e.g. person: one 0.7 voids it all
  log_probs = _log_probs(np.r_[np.zeros(4000, int), np.ones(1000, int)],
                         np.r_[sure, unsure])
  thresholds = class_confidence.fit_class_thresholds(log_probs, 0.25)
  assert thresholds.shape == (4,) and thresholds.dtype == np.float32
  np.testing.assert_allclose(thresholds[:2], [0.85, 0.35], atol=0.01)
  assert thresholds[2] == thresholds[3] == 0  # No pixel takes them.
  assert (sure >= thresholds[0]).mean() == pytest.approx(0.75, abs=0.01)
  assert (unsure >= thresholds[1]).mean() == pytest.approx(0.75, abs=0.01)
  for bad in (-0.1, 1.0):
    with pytest.raises(ValueError, match='quantile'):
      class_confidence.fit_class_thresholds(log_probs, bad)
  with pytest.raises(ValueError, match='N>0'):
    class_confidence.fit_class_thresholds(np.zeros((0, 4)), 0.5)


def test_a_pixel_is_void_below_the_threshold_of_its_own_class():
  probs = tf.constant([[[0.9, 0.05, 0.05],     # class 0 at 0.9: kept
                        [0.6, 0.3, 0.1],       # class 0 at 0.6: void
                        [0.3, 0.6, 0.1],       # class 1 at 0.6: kept
                        [0.3, 0.45, 0.25]]])   # class 1 at 0.45: void
  panoptic = tf.constant([[1000, 1001, 2000, 2001]], tf.int32)
  masked = class_confidence.mask_unconfident(panoptic, probs, [0.7, 0.5, 0.0],
                                             void_id=255000)
  np.testing.assert_array_equal(masked.numpy(), [[1000, 255000, 2000, 255000]])
