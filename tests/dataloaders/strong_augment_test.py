"""Tests for dataloaders/strong_augment.py: colour, blur, cutout, the pipeline."""

import numpy as np
import tensorflow as tf

from official_naive_student.dataloaders import strong_augment as sa

_VOID_ID = 255 * 1000


def _image(h=32, w=48, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(0, 255, (h, w, 3)), tf.float32)


def _panoptic(h=32, w=48):
  return tf.constant(np.full((h, w), 11 * 1000 + 1), tf.int32)


class StrongAugmentTest(tf.test.TestCase):

  def test_equal_seeds_equal_outputs_other_seeds_differ(self):
    image, panoptic = _image(), _panoptic()
    a = sa.strong_augment(image, panoptic, tf.constant([3, 4]), _VOID_ID)
    b = sa.strong_augment(image, panoptic, tf.constant([3, 4]), _VOID_ID)
    self.assertAllEqual(a[0], b[0])
    self.assertAllEqual(a[1], b[1])
    others = [sa.strong_augment(image, panoptic, tf.constant([s, 4]),
                                _VOID_ID)[0] for s in range(5, 9)]
    self.assertTrue(any(np.abs(o - a[0]).max() > 1.0 for o in others))

  def test_range_shape_and_only_void_added_to_labels(self):
    image, panoptic = _image(), _panoptic()
    cut = 0
    for s in range(40):
      out, labels = sa.strong_augment(image, panoptic, tf.constant([s, 0]),
                                      _VOID_ID)
      self.assertEqual(out.shape, image.shape)
      self.assertEqual(out.dtype, tf.float32)
      self.assertGreaterEqual(float(tf.reduce_min(out)), 0.0)
      self.assertLessEqual(float(tf.reduce_max(out)), 255.0)
      values = set(np.unique(labels.numpy()))
      self.assertTrue(values <= {11 * 1000 + 1, _VOID_ID}, values)
      cut += _VOID_ID in values
    # Cutout has probability 0.5: 40 draws without one or with all are a bug.
    self.assertBetween(cut, 8, 32)

  def test_cutout_box_area_and_aspect_within_bounds(self):
    for s in range(30):
      box = sa.cutout_box(tf.constant([100, 200]), tf.constant([s, 1])).numpy()
      rows, cols = np.nonzero(box)
      h = rows.max() - rows.min() + 1
      w = cols.max() - cols.min() + 1
      self.assertEqual(box.sum(), h * w)  # One solid rectangle.
      area = box.sum() / (100 * 200)
      self.assertBetween(area, 0.015, 0.41)

  def test_blur_keeps_a_flat_image_and_smooths_a_spike(self):
    flat = tf.fill([16, 16, 3], 100.0)
    self.assertAllClose(sa.gaussian_blur(flat, 1.5), flat, atol=1e-3)
    spike = np.zeros([17, 17, 3], np.float32)
    spike[8, 8] = 255.0
    blurred = sa.gaussian_blur(tf.constant(spike), 1.0).numpy()
    self.assertAllClose(blurred.sum(), 255.0 * 3, rtol=1e-4)
    self.assertLess(blurred[8, 8, 0], 255.0 * 0.2)
    # 2-D Gaussian of sigma 1: the centre holds 1 / (2 pi) of the mass.
    self.assertAllClose(blurred[8, 8, 0], 255.0 / (2 * np.pi), rtol=0.05)

  def test_color_jitter_of_gray_keeps_it_gray(self):
    gray = tf.tile(_image()[..., :1], [1, 1, 3])
    out = sa.color_jitter(gray, tf.constant([1, 2], tf.int64)).numpy()
    self.assertAllClose(out[..., 0], out[..., 1], atol=1e-2)
    self.assertAllClose(out[..., 0], out[..., 2], atol=1e-2)


if __name__ == '__main__':
  tf.test.main()
