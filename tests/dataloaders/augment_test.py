"""Tests for dataloaders/augment.py: scale, crop/pad, flip, compositions."""

import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student.dataloaders import augment
from official_naive_student.dataloaders import targets

_DIV = 1000
_VOID_ID = 255 * _DIV


def _seed(i):
  return tf.constant([i, 7], tf.int32)


def _image_from_panoptic(panoptic):
  """An image whose channel 0 is the panoptic id / 1000, to check alignment."""
  channel = np.asarray(panoptic, np.float32) / _DIV
  return np.stack([channel, channel + 1, channel + 2], axis=-1)


def _encode(panoptic):
  return targets.encode_targets(panoptic, (11, 13), _DIV, 255, sigma=2.0)


class ScaleTest(tf.test.TestCase):

  def test_scale_factor_grid_and_determinism(self):
    values = [augment.random_scale_factor(_seed(i), 0.5, 2.0, 0.25).numpy()
              for i in range(40)]
    self.assertContainsSubset(set(values), set(np.linspace(0.5, 2.0, 7)))
    self.assertGreater(len(set(values)), 3)
    again = augment.random_scale_factor(_seed(3), 0.5, 2.0, 0.25).numpy()
    self.assertEqual(again, values[3])

  def test_continuous_and_fixed_scale(self):
    values = np.array([augment.random_scale_factor(_seed(i), 0.5, 2.0, 0)
                       for i in range(20)])
    self.assertTrue(np.all((values >= 0.5) & (values < 2.0)))
    self.assertEqual(len(set(values.tolist())), 20)
    self.assertEqual(augment.random_scale_factor(_seed(0), 1.0, 1.0).numpy(),
                     1.0)
    with self.assertRaises(ValueError):
      augment.random_scale_factor(_seed(0), 2.0, 1.0)

  def test_scale_two_aligns_corners_and_keeps_label_ids(self):
    panoptic = np.array([[0, 13001, 13001], [11002, 11002, 255000]], np.int32)
    image = _image_from_panoptic(panoptic)
    out_image, out_panoptic = augment.scale_image_and_label(image, panoptic, 2.0)
    self.assertEqual(out_image.shape.as_list(), [4, 6, 3])
    self.assertEqual(out_panoptic.dtype, tf.int32)
    self.assertContainsSubset(np.unique(out_panoptic), np.unique(panoptic))
    # align_corners=True: the four corners map to the four input corners.
    for y, x, y0, x0 in ((0, 0, 0, 0), (0, 5, 0, 2), (3, 0, 1, 0),
                         (3, 5, 1, 2)):
      self.assertEqual(out_panoptic[y, x], panoptic[y0, x0])
      self.assertAllClose(out_image[y, x], image[y0, x0])

  def test_scale_one_is_identity(self):
    panoptic = np.arange(12, dtype=np.int32).reshape(3, 4) * 1000
    image = np.random.RandomState(0).uniform(0, 255, [3, 4, 3])
    out_image, out_panoptic = augment.scale_image_and_label(image, panoptic, 1.0)
    self.assertAllClose(out_image, image)
    self.assertAllEqual(out_panoptic, panoptic)

  def test_random_scale_size_is_floor_of_scaled_size(self):
    image = np.zeros([10, 20, 3], np.uint8)
    panoptic = np.zeros([10, 20], np.int32)
    out_image, out_panoptic = augment.random_scale(
        image, panoptic, _seed(0), 0.75, 0.75)
    self.assertEqual(out_image.shape.as_list(), [7, 15, 3])
    self.assertEqual(out_panoptic.shape.as_list(), [7, 15])


class CropPadTest(tf.test.TestCase):

  def test_pad_small_input_with_void_and_mean_pixel(self):
    panoptic = np.full([2, 3], 13001, np.int32)
    image = np.full([2, 3, 3], 9.0, np.float32)
    out_image, out_panoptic = augment.random_crop_or_pad(
        image, panoptic, 4, 5, _seed(1), label_pad_value=_VOID_ID)
    self.assertEqual(out_panoptic.shape.as_list(), [4, 5])
    self.assertEqual(out_image.shape.as_list(), [4, 5, 3])
    out_panoptic = out_panoptic.numpy()
    self.assertEqual(np.sum(out_panoptic == 13001), 6)
    self.assertEqual(np.sum(out_panoptic == _VOID_ID), 14)
    inside = out_panoptic == 13001
    self.assertAllEqual(out_image.numpy()[inside], np.full([6, 3], 9.0))
    self.assertAllEqual(out_image.numpy()[~inside],
                        np.full([14, 3], augment.MEAN_PIXEL))
    rows, cols = np.nonzero(inside)  # the 2x3 block stays contiguous.
    self.assertEqual((np.ptp(rows), np.ptp(cols)), (1, 2))

  def test_crop_large_input_is_a_window(self):
    panoptic = np.arange(6 * 8, dtype=np.int32).reshape(6, 8)
    image = _image_from_panoptic(panoptic)
    offsets = set()
    for i in range(10):
      out_image, out_panoptic = augment.random_crop_or_pad(
          image, panoptic, 3, 4, _seed(i), label_pad_value=_VOID_ID)
      y0, x0 = divmod(int(out_panoptic[0, 0]), 8)
      self.assertAllEqual(out_panoptic, panoptic[y0:y0 + 3, x0:x0 + 4])
      self.assertAllEqual(out_image, image[y0:y0 + 3, x0:x0 + 4])
      offsets.add((y0, x0))
    self.assertGreater(len(offsets), 1)

  def test_mixed_pad_and_crop_and_determinism(self):
    panoptic = np.arange(2 * 9, dtype=np.int32).reshape(2, 9)
    image = _image_from_panoptic(panoptic)
    first = augment.random_crop_or_pad(image, panoptic, 4, 5, _seed(2), -1)
    second = augment.random_crop_or_pad(image, panoptic, 4, 5, _seed(2), -1)
    self.assertAllEqual(first[0], second[0])
    self.assertAllEqual(first[1], second[1])
    kept = first[1].numpy()
    self.assertEqual(np.sum(kept == -1), 10)  # 2 padded rows of 5.
    self.assertEqual(np.sum(kept >= 0), 10)


class ScaleCropTest(tf.test.TestCase):

  def test_offsets_cover_pad_and_crop_ranges(self):
    offsets = np.array([augment.sample_crop_offset([3, 9], (5, 5), _seed(i))
                        for i in range(40)])
    self.assertEqual(set(offsets[:, 0]), {-2, -1, 0})  # pad 2 rows
    self.assertEqual(set(offsets[:, 1]), {0, 1, 2, 3, 4})  # crop 5 of 9

  def test_fused_equals_scale_then_crop(self):
    rng = np.random.RandomState(0)
    panoptic = rng.randint(0, 20, [7, 9]).astype(np.int32) * 1000 + 1
    image = rng.uniform(0, 255, [7, 9, 3]).astype(np.float32)
    for scale, offset in ((2.0, (3, 5)), (1.5, (-1, 2)), (0.5, (-2, -3)),
                          (1.0, (2, 1)), (1.25, (6, 4))):
      scaled = augment.scale_image_and_label(image, panoptic, scale)
      expected = augment.crop_or_pad(*scaled, offset, 5, 6, -1, 7.0)
      actual = augment.scale_crop_or_pad(image, panoptic, scale, offset, 5, 6,
                                         -1, 7.0)
      self.assertAllClose(actual[0], expected[0], atol=1e-4, msg=str(scale))
      self.assertAllEqual(actual[1], expected[1], msg=str(scale))
      self.assertEqual(actual[0].shape.as_list(), [5, 6, 3])


class FlipTest(tf.test.TestCase):

  def test_flip_probability_one_and_zero(self):
    panoptic = np.array([[1, 2, 3]], np.int32)
    image = _image_from_panoptic(panoptic)
    flipped = augment.random_flip_left_right(image, panoptic, _seed(0), 1.0)
    self.assertAllEqual(flipped[1], [[3, 2, 1]])
    self.assertAllEqual(flipped[0], image[:, ::-1])
    kept = augment.random_flip_left_right(image, panoptic, _seed(0), 0.0)
    self.assertAllEqual(kept[1], panoptic)
    self.assertAllEqual(kept[0], image)

  def test_targets_of_flip_equal_flip_of_targets(self):
    # Centers of mass at integer columns, so rounding commutes with the flip:
    # car 13001 (rows 0..2, columns 1..3) -> (1, 2); person 11002 (rows 1..3,
    # columns 4..6) -> (2, 5).
    panoptic = np.zeros([5, 8], np.int32)
    panoptic[0:3, 1:4] = 13001
    panoptic[1:4, 4:7] = 11002
    panoptic[4, 0:3] = 11000  # crowd
    panoptic[4, 7] = _VOID_ID
    expected = augment.flip_targets_left_right(_encode(panoptic))
    actual = _encode(panoptic[:, ::-1].copy())
    self.assertCountEqual(expected.keys(), actual.keys())
    for key in actual:
      self.assertAllClose(expected[key], actual[key], msg=key)
    # Offsets of the flipped map point to the flipped centers (2 -> 5, 5 -> 2).
    offset = actual[common.GT_OFFSET].numpy()
    self.assertAllEqual(offset[0, 5], [1, 0])  # flipped car center (1, 5)
    self.assertAllEqual(offset[1, 1], [1, 1])  # flipped person center (2, 2)

  def test_flip_batched_predictions(self):
    offsets = tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])  # [1, 1, 2, 2]
    heat = tf.constant([[[[0.1], [0.9]]]])
    out = augment.flip_targets_left_right(
        {common.PRED_OFFSET: offsets, common.PRED_CENTER_HEATMAP: heat,
         common.IMAGE_NAME: tf.constant(['a'])}, batched=True)
    self.assertAllEqual(out[common.PRED_OFFSET], [[[[3, -4], [1, -2]]]])
    self.assertAllClose(out[common.PRED_CENTER_HEATMAP], [[[[0.9], [0.1]]]])
    self.assertAllEqual(out[common.IMAGE_NAME], [b'a'])


class PreprocessTest(tf.test.TestCase):

  def _inputs(self):
    panoptic = np.zeros([12, 16], np.int32)
    panoptic[2:6, 3:9] = 13001
    panoptic[7:11, 10:15] = 11002
    return _image_from_panoptic(panoptic), panoptic

  def _train(self, image, panoptic, seed, **kwargs):
    return augment.preprocess_for_training(
        image, panoptic, seed, crop_size=(8, 10), label_pad_value=_VOID_ID,
        **kwargs)

  def test_training_shapes_alignment_and_determinism(self):
    image, panoptic = self._inputs()
    for i in range(6):
      out_image, out_panoptic = self._train(image, panoptic, _seed(i),
                                            min_scale=1.0, max_scale=1.0)
      self.assertEqual(out_image.shape.as_list(), [8, 10, 3])
      self.assertEqual(out_panoptic.shape.as_list(), [8, 10])
      # Without rescaling, image and label stay pixel-aligned.
      self.assertAllClose(out_image[..., 0], out_panoptic.numpy() / _DIV)
    first = self._train(image, panoptic, _seed(5))
    second = self._train(image, panoptic, _seed(5))
    other = self._train(image, panoptic, _seed(6))
    self.assertAllEqual(first[0], second[0])
    self.assertAllEqual(first[1], second[1])
    self.assertNotAllClose(first[0], other[0])

  def test_training_in_dataset_map_and_tf_function(self):
    image, panoptic = self._inputs()

    def fn(seed):
      out_image, out_panoptic = self._train(image, panoptic, seed)
      features = _encode(out_panoptic)
      features[common.IMAGE] = out_image
      return features

    eager = fn(_seed(3))
    traced = tf.function(fn, jit_compile=False)(_seed(3))
    ds = tf.data.Dataset.from_tensor_slices(tf.constant([[3, 7], [4, 7]]))
    ds = ds.map(fn).batch(2)
    self.assertEqual(ds.element_spec[common.IMAGE].shape.as_list(),
                     [None, 8, 10, 3])
    self.assertEqual(ds.element_spec[common.GT_OFFSET].shape.as_list(),
                     [None, 8, 10, 2])
    batch = next(iter(ds))
    for key in eager:
      self.assertAllClose(traced[key], eager[key], msg=key)
      self.assertAllClose(batch[key][0], eager[key], msg=key)

  def test_eval_pads_bottom_right(self):
    image, panoptic = self._inputs()
    out_image, out_panoptic = augment.preprocess_for_eval(
        image, panoptic, pad_to_size=(13, 18), label_pad_value=_VOID_ID)
    self.assertEqual(out_image.shape.as_list(), [13, 18, 3])
    self.assertAllEqual(out_panoptic[:12, :16], panoptic)
    self.assertAllEqual(out_panoptic[12], np.full([18], _VOID_ID))
    self.assertAllEqual(out_panoptic[:, 16:], np.full([13, 2], _VOID_ID))
    self.assertAllClose(out_image[:12, :16], image)
    self.assertAllEqual(out_image[12], np.full([18, 3], augment.MEAN_PIXEL))

  def test_eval_without_padding_or_label(self):
    image, panoptic = self._inputs()
    out_image, out_panoptic = augment.preprocess_for_eval(image.astype(np.uint8))
    self.assertIsNone(out_panoptic)
    self.assertEqual(out_image.dtype, tf.float32)
    with self.assertRaises(ValueError):
      augment.preprocess_for_eval(image, panoptic, pad_to_size=(13, 18))
    with self.assertRaises(tf.errors.InvalidArgumentError):
      augment.preprocess_for_eval(image, pad_to_size=(10, 18))


if __name__ == '__main__':
  tf.test.main()
