"""Tests for dataloaders/targets.py on hand-made panoptic maps."""

import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student.dataloaders import targets

_DIV = 1000
_VOID = 255
_CAR = 13
_PERSON = 11
_ROAD = 0


def _encode(panoptic, **kwargs):
  out = targets.encode_targets(
      np.asarray(panoptic, np.int32), thing_ids=(_PERSON, _CAR),
      label_divisor=_DIV, ignore_label=_VOID, **kwargs)
  return {k: v.numpy() for k, v in out.items()}


def _gaussian(dy, dx, sigma):
  return np.exp(-(dy**2 + dx**2) / (2.0 * sigma**2))


class EncodeTargetsTest(tf.test.TestCase):

  def test_worked_example(self):
    # Person 11001 covers (0,2), (1,0), (1,1), (1,2): center of mass
    # (0.75, 1.25) -> (1, 1). (2,0) is a crowd person (instance 0), (2,1) void.
    #   panoptic             offset y     offset x
    #   0     0      11001   0 0 1        0 0 -1
    #   11001 11001  11001   0 0 0        1 0 -1
    #   11000 255000 0       0 0 0        0 0  0
    panoptic = [[0, 0, 11001], [11001, 11001, 11001], [11000, 255000, 0]]
    out = _encode(panoptic, sigma=1.0)
    self.assertAllEqual(out[common.GT_SEMANTIC],
                        [[0, 0, 11], [11, 11, 11], [11, 255, 0]])
    self.assertAllEqual(out[common.GT_OFFSET][..., 0],
                        [[0, 0, 1], [0, 0, 0], [0, 0, 0]])
    self.assertAllEqual(out[common.GT_OFFSET][..., 1],
                        [[0, 0, -1], [1, 0, -1], [0, 0, 0]])
    self.assertAllEqual(out[common.GT_OFFSET_WEIGHTS],
                        [[0, 0, 1], [1, 1, 1], [0, 0, 0]])
    self.assertAllEqual(out[common.GT_CENTER_WEIGHTS],
                        [[1, 1, 1], [1, 1, 1], [0, 0, 1]])
    # Area 4 < 4096: the instance is small (weight 3); void has weight 0.
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS],
                        [[1, 1, 3], [3, 3, 3], [1, 0, 1]])
    yy, xx = np.mgrid[:3, :3]
    self.assertAllClose(out[common.GT_CENTER_HEATMAP][..., 0],
                        _gaussian(yy - 1, xx - 1, 1.0))
    self.assertEqual(out[common.GT_CENTER_HEATMAP][1, 1, 0], 1.0)

  def test_output_shapes_and_dtypes(self):
    out = targets.encode_targets(tf.zeros([4, 6], tf.int32), (11,), _DIV, _VOID)
    expected = {
        common.GT_SEMANTIC: ([4, 6], tf.int32),
        common.GT_SEMANTIC_WEIGHTS: ([4, 6], tf.float32),
        common.GT_CENTER_HEATMAP: ([4, 6, 1], tf.float32),
        common.GT_CENTER_WEIGHTS: ([4, 6], tf.float32),
        common.GT_OFFSET: ([4, 6, 2], tf.float32),
        common.GT_OFFSET_WEIGHTS: ([4, 6], tf.float32),
    }
    self.assertCountEqual(out.keys(), expected.keys())
    for key, (shape, dtype) in expected.items():
      self.assertEqual(out[key].shape.as_list(), shape, key)
      self.assertEqual(out[key].dtype, dtype, key)

  def test_no_instances_gives_empty_heatmap_and_offsets(self):
    out = _encode([[0, 0, 1000], [255000, 1000, 13000]])
    self.assertAllEqual(out[common.GT_CENTER_HEATMAP], np.zeros([2, 3, 1]))
    self.assertAllEqual(out[common.GT_OFFSET], np.zeros([2, 3, 2]))
    self.assertAllEqual(out[common.GT_OFFSET_WEIGHTS], np.zeros([2, 3]))
    # The car crowd pixel (2nd row, last column) and void get no center loss.
    self.assertAllEqual(out[common.GT_CENTER_WEIGHTS], [[1, 1, 1], [0, 1, 0]])

  def test_gaussian_is_truncated_like_deeplab2(self):
    # sigma 1 -> patch 2 * int(3 * 1 + 1) + 1 = 9 wide (DeepLab2: 6 sigma + 3).
    self.assertEqual(targets.gaussian_patch(1.0).shape, (9, 9))
    self.assertEqual(targets.gaussian_patch(8.0).shape, (51, 51))
    panoptic = np.zeros([1, 12], np.int32)
    panoptic[0, 1] = 13001
    heat = _encode(panoptic, sigma=1.0)[common.GT_CENTER_HEATMAP][0, :, 0]
    xs = np.arange(12)
    expected = np.where(np.abs(xs - 1) <= 4, _gaussian(0, xs - 1, 1.0), 0.0)
    self.assertAllClose(heat, expected)
    self.assertEqual(heat[6], 0.0)

  def test_heatmap_is_max_over_instances(self):
    panoptic = np.zeros([1, 5], np.int32)
    panoptic[0, 0] = 11001
    panoptic[0, 3] = 11002
    heat = _encode(panoptic, sigma=2.0)[common.GT_CENTER_HEATMAP][0, :, 0]
    xs = np.arange(5)
    expected = np.maximum(_gaussian(0, xs, 2.0), _gaussian(0, xs - 3, 2.0))
    self.assertAllClose(heat, expected)

  def test_small_instance_weights(self):
    # Car 13001 has 3 pixels, person 11001 has 5; threshold 4.
    panoptic = np.array([[13001, 13001, 13001, 0, 0],
                         [11001, 11001, 11001, 11001, 11001]])
    out = _encode(panoptic, small_instance_area=4, small_instance_weight=2.5)
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS],
                        [[2.5, 2.5, 2.5, 1, 1], [1, 1, 1, 1, 1]])
    out = _encode(panoptic, small_instance_area=0)
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS], np.ones([2, 5]))

  def test_small_instance_ignores_crowd_and_stuff(self):
    # 1-pixel crowd car and 1-pixel road keep weight 1.
    out = _encode([[13000, 0, 13002]], small_instance_area=10)
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS], [[1, 1, 3]])

  def test_crowd_kept_in_semantic_by_default(self):
    panoptic = [[13000, 13000, 13005], [0, 0, 13005]]
    out = _encode(panoptic)
    self.assertAllEqual(out[common.GT_SEMANTIC], [[13, 13, 13], [0, 0, 13]])
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS],
                        [[1, 1, 3], [1, 1, 3]])
    self.assertAllEqual(out[common.GT_CENTER_WEIGHTS], [[0, 0, 1], [1, 1, 1]])
    self.assertAllEqual(out[common.GT_OFFSET_WEIGHTS], [[0, 0, 1], [0, 0, 1]])
    # Only the real car (center (0.5 -> 0 half-to-even, 2)) has a peak.
    peaks = np.argwhere(out[common.GT_CENTER_HEATMAP][..., 0] == 1.0)
    self.assertAllEqual(peaks, [[0, 2]])
    self.assertAllEqual(out[common.GT_OFFSET][:, 2], [[0, 0], [-1, 0]])

  def test_ignore_crowd_in_semantic(self):
    out = _encode([[13000, 13005, 0]], ignore_crowd_in_semantic=True)
    self.assertAllEqual(out[common.GT_SEMANTIC], [[255, 13, 0]])
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS], [[0, 3, 1]])
    self.assertAllEqual(out[common.GT_CENTER_WEIGHTS], [[0, 1, 1]])

  def test_crowd_mask_removes_instance_pixels(self):
    # A COCO-style crowd segment with a nonzero instance id.
    panoptic = [[11001, 11001, 11002, 11002]]
    crowd = np.array([[False, False, True, True]])
    out = _encode(panoptic, crowd_mask=crowd)
    self.assertAllEqual(out[common.GT_OFFSET_WEIGHTS], [[1, 1, 0, 0]])
    self.assertAllEqual(out[common.GT_CENTER_WEIGHTS], [[1, 1, 0, 0]])
    self.assertAllEqual(out[common.GT_SEMANTIC], [[11, 11, 11, 11]])
    peaks = np.argwhere(out[common.GT_CENTER_HEATMAP][..., 0] == 1.0)
    self.assertAllEqual(peaks, [[0, 0]])  # mean x 0.5 rounds to 0.

  def test_void_and_stuff_ids_never_become_instances(self):
    # Void with a nonzero instance id, and a stuff class with one.
    out = _encode([[255007, 255007, 5, 5]])
    self.assertAllEqual(out[common.GT_SEMANTIC], [[255, 255, 0, 0]])
    self.assertAllEqual(out[common.GT_SEMANTIC_WEIGHTS], [[0, 0, 1, 1]])
    self.assertAllEqual(out[common.GT_CENTER_WEIGHTS], [[0, 0, 1, 1]])
    self.assertAllEqual(out[common.GT_OFFSET_WEIGHTS], np.zeros([1, 4]))
    self.assertAllEqual(out[common.GT_CENTER_HEATMAP], np.zeros([1, 4, 1]))

  def test_center_precision_on_wide_maps(self):
    # Far-right columns of a full-resolution-wide map (sums kept in int64).
    panoptic = np.zeros([2, 4096], np.int32)
    panoptic[:, 2001:4090] = 13001  # mean x 3045, mean y 0.5 -> 0.
    out = _encode(panoptic)
    self.assertAllEqual(out[common.GT_OFFSET][0, 2001], [0, 1044])
    self.assertAllEqual(out[common.GT_OFFSET][1, 4089], [-1, -1044])

  def test_round_trip_by_nearest_center(self):
    # Three instances whose ids follow the row-major order of their centers;
    # regroup thing pixels by pixel + offset -> nearest peak, and rebuild.
    panoptic = np.zeros([8, 10], np.int32)
    panoptic[0:3, 0:4] = 11001  # center (1, 1.5) -> (1, 2)
    panoptic[1:4, 6:10] = 13002  # center (2, 7.5) -> (2, 8)
    panoptic[5:8, 1:9] = 13003  # center (6, 4.5) -> (6, 4)
    panoptic[4, 0] = 13003  # a far pixel: center (5.92, 4.32) -> (6, 4)
    panoptic[7, 9] = _VOID * _DIV
    out = _encode(panoptic)
    heat = out[common.GT_CENTER_HEATMAP][..., 0]
    centers = np.argwhere(heat == 1.0)  # row-major order
    self.assertAllEqual(centers, [[1, 2], [2, 8], [6, 4]])
    yy, xx = np.mgrid[:8, :10]
    points = np.stack([yy, xx], -1) + out[common.GT_OFFSET]
    dist = np.linalg.norm(points[:, :, None, :] - centers, axis=-1)
    instance = np.argmin(dist, axis=-1) + 1
    is_thing = out[common.GT_OFFSET_WEIGHTS] > 0
    rebuilt = out[common.GT_SEMANTIC] * _DIV + np.where(is_thing, instance, 0)
    self.assertAllEqual(rebuilt, panoptic)
    self.assertAllEqual(np.min(dist, axis=-1)[is_thing], np.zeros(49))

  def test_graph_modes_match_eager(self):
    panoptic = np.zeros([4, 6], np.int32)
    panoptic[1:3, 1:4] = 13001
    panoptic[0, 5] = 11000
    eager = _encode(panoptic)
    fn = tf.function(
        lambda p: targets.encode_targets(p, (11, 13), _DIV, _VOID),
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
        jit_compile=False)
    traced = fn(tf.constant(panoptic))
    ds = tf.data.Dataset.from_tensors(panoptic).map(
        lambda p: targets.encode_targets(p, (11, 13), _DIV, _VOID))
    self.assertEqual(ds.element_spec[common.GT_OFFSET].shape.as_list(),
                     [4, 6, 2])
    mapped = next(iter(ds))
    for key, value in eager.items():
      self.assertAllEqual(traced[key], value, key)
      self.assertAllEqual(mapped[key], value, key)


if __name__ == '__main__':
  tf.test.main()
