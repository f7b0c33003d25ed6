"""Panoptic-DeepLab training targets from a panoptic id map (pure TF, graph safe).

`encode_targets` turns one (already augmented) panoptic map into the semantic,
center-heatmap and offset targets plus their loss weights, following
Panoptic-DeepLab (Cheng et al., CVPR 2020) and DeepLab2's
`data/sample_generator.py:PanopticSampleGenerator`:

  * panoptic id = semantic_train_id * label_divisor + instance_id; void pixels
    have semantic id `ignore_label`.
  * Crowd: a pixel of a thing class with instance id 0 is crowd (Cityscapes'
    `iscrowd` groups); `crowd_mask` marks more crowd pixels (COCO style). Crowd
    pixels keep their class in the semantic target (DeepLab2) unless
    `ignore_crowd_in_semantic` (Detectron2's Panoptic-DeepLab option), get no
    center and no offset, and have zero center and offset loss weight.
  * An instance is a (thing class, instance id > 0) pair; its center is its
    center of mass rounded with `tf.round` (half to even), as in DeepLab2, so
    offsets are integers: round(center) - pixel, in (y, x) order.
  * The heatmap is the max over instances of an unnormalized Gaussian
    exp(-(dy^2 + dx^2) / (2 sigma^2)) with its peak (exactly 1.0) at the
    center, truncated to the (6 sigma + 3)-wide square DeepLab2 uses.
  * Small instances: pixels of instances with fewer than `small_instance_area`
    pixels get semantic weight `small_instance_weight`. As in DeepLab2 the area
    is counted on the map given here, i.e. after scale augmentation and
    cropping, with no rescaling of the threshold (DeepLab2's Cityscapes configs
    use 4096 = 64x64 px on 1025x2049 crops). Callers training at another
    resolution scale the threshold themselves.

Everything is vectorized (one segment sum over len(thing_ids) * label_divisor
segments for all instances and one `tensor_scatter_nd_max` for all Gaussians), so it runs inside
`tf.data.Dataset.map` and `tf.function` with no Python loop over instances.
"""

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from official_naive_student import common


def gaussian_patch(sigma: float) -> np.ndarray:
  """Returns the truncated, unnormalized Gaussian stamped at each center.

  Args:
    sigma: standard deviation in pixels.

  Returns:
    [2r + 1, 2r + 1] float32 array with r = int(3 * sigma + 1) and value
    exp(-(dy^2 + dx^2) / (2 sigma^2)) at offset (dy, dx) from the middle; the
    middle is exactly 1.0. For integer sigma this is DeepLab2's
    `_compute_gaussian_from_std` (size 6 sigma + 3).
  """
  if sigma <= 0:
    raise ValueError(f'sigma must be positive, got {sigma}.')
  radius = int(3 * sigma + 1)
  d = np.arange(-radius, radius + 1, dtype=np.float64)
  patch = np.exp(-(d[:, None]**2 + d[None, :]**2) / (2.0 * sigma**2))
  return patch.astype(np.float32)


def _thing_rank(semantic: tf.Tensor, thing_ids: Sequence[int]) -> tf.Tensor:
  """Index of each pixel's class in `thing_ids`, -1 for other classes.

  Args:
    semantic: integer tensor of non-negative train ids.
    thing_ids: train ids of the thing classes.

  Returns:
    int32 tensor shaped like `semantic`.
  """
  table = np.full([max(thing_ids, default=0) + 2], -1, np.int32)
  table[list(thing_ids)] = np.arange(len(thing_ids), dtype=np.int32)
  # Ids above the table (e.g. ignore_label) land on its last entry, -1.
  return tf.gather(tf.constant(table),
                   tf.clip_by_value(semantic, 0, table.size - 1))


def _stamp_gaussians(center_y: tf.Tensor, center_x: tf.Tensor, height,
                     width, sigma: float) -> tf.Tensor:
  """Max over centers of Gaussians stamped on a [height, width] canvas.

  Args:
    center_y: [N] int32 rows of the centers, in [0, height).
    center_x: [N] int32 columns of the centers, in [0, width).
    height: int or scalar int32 tensor.
    width: int or scalar int32 tensor.
    sigma: Gaussian standard deviation in pixels.

  Returns:
    [height, width] float32 heatmap, zero where no Gaussian reaches.
  """
  patch = gaussian_patch(sigma)
  radius = (patch.shape[0] - 1) // 2
  grid = np.arange(-radius, radius + 1, dtype=np.int32)
  dy = tf.constant(np.repeat(grid, grid.size))  # [K]
  dx = tf.constant(np.tile(grid, grid.size))  # [K]
  # Canvas padded by `radius` on every side, so no index falls outside it.
  rows = center_y[:, tf.newaxis] + radius + dy[tf.newaxis, :]  # [N, K]
  cols = center_x[:, tf.newaxis] + radius + dx[tf.newaxis, :]
  indices = tf.reshape(tf.stack([rows, cols], axis=-1), [-1, 2])
  updates = tf.tile(tf.constant(patch.reshape(-1)), [tf.size(center_y)])
  canvas = tf.zeros([height + 2 * radius, width + 2 * radius], tf.float32)
  canvas = tf.tensor_scatter_nd_max(canvas, indices, updates)
  return canvas[radius:radius + height, radius:radius + width]


def encode_targets(
    panoptic: tf.Tensor,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
    ignore_crowd_in_semantic: bool = False,
    crowd_mask: Optional[tf.Tensor] = None,
) -> Dict[str, tf.Tensor]:
  """Computes Panoptic-DeepLab targets and loss weights from a panoptic map.

  Worked example (label_divisor 1000, ignore 255, thing class 11, stuff 0):

    panoptic               semantic      offset (y, x)           offset_weights
    0      0      11001    0  0   11     0,0   0,0   1,-1        0 0 1
    11001  11001  11001    11 11  11     0,1   0,0   0,-1        1 1 1
    11000  255000 0        11 255 0      0,0   0,0   0,0         0 0 0

  Instance 11001 has pixels (0,2), (1,0), (1,1), (1,2): center of mass
  (0.75, 1.25), rounded to (1, 1), where the heatmap is 1.0. Pixel (2,0) is
  crowd (thing class, instance 0): semantic 11, center weight 0, no offset.
  Pixel (2,1) is void: semantic 255 and every weight 0. Center weights are
  1 on the other seven pixels.

  Args:
    panoptic: [H, W] non-negative integer panoptic ids,
      train_id * label_divisor + instance_id.
    thing_ids: train ids of the classes that have instances.
    label_divisor: panoptic label divisor (e.g. 1000).
    ignore_label: train id of void pixels (e.g. 255).
    sigma: standard deviation of the center Gaussians, in pixels.
    small_instance_area: instances with fewer pixels than this (counted on this
      map) get `small_instance_weight` in the semantic loss; 0 disables it.
    small_instance_weight: semantic loss weight of small-instance pixels.
    ignore_crowd_in_semantic: if True, crowd pixels become `ignore_label` in
      the semantic target (and get semantic weight 0).
    crowd_mask: optional [H, W] bool, extra crowd pixels (e.g. COCO iscrowd
      segments); they are handled like thing pixels with instance id 0.

  Returns:
    A dict keyed by `common`:
      GT_SEMANTIC: [H, W] int32 train ids, `ignore_label` on void.
      GT_SEMANTIC_WEIGHTS: [H, W] float32; 0 on void (pixels whose semantic
        target is `ignore_label`), `small_instance_weight` on small instances,
        1 elsewhere. (DeepLab2 keeps 1 on void and lets the loss skip
        `ignore_label`; the product with the ignore mask is the same.)
      GT_CENTER_HEATMAP: [H, W, 1] float32 in [0, 1].
      GT_CENTER_WEIGHTS: [H, W] float32, 0 on void and crowd, 1 elsewhere.
      GT_OFFSET: [H, W, 2] float32 (y, x), round(center) - pixel on instance
        pixels, 0 elsewhere.
      GT_OFFSET_WEIGHTS: [H, W] float32, 1 on instance pixels (thing class,
        instance id > 0, not crowd), 0 elsewhere.
  """
  panoptic = tf.cast(tf.convert_to_tensor(panoptic), tf.int32)
  static_shape = panoptic.shape
  static_shape.assert_has_rank(2)
  shape = tf.shape(panoptic)
  height, width = shape[0], shape[1]

  semantic = panoptic // label_divisor
  instance_id = panoptic - semantic * label_divisor
  thing_rank = _thing_rank(semantic, thing_ids)
  thing_mask = thing_rank >= 0
  crowd = tf.logical_and(thing_mask, tf.equal(instance_id, 0))
  if crowd_mask is not None:
    crowd = tf.logical_or(crowd, tf.cast(crowd_mask, tf.bool))
  void = tf.equal(semantic, ignore_label)
  instance_mask = tf.logical_and(
      tf.logical_and(thing_mask, tf.logical_not(crowd)), tf.logical_not(void))
  if ignore_crowd_in_semantic:
    semantic = tf.where(crowd, ignore_label, semantic)
  semantic_void = tf.equal(semantic, ignore_label)

  # One segment per (thing class, instance id); other pixels get -1, which
  # the segment ops drop. No tf.unique: segment ids are dense and small.
  num_segments = max(len(thing_ids) * label_divisor, 1)
  segment = tf.where(instance_mask, thing_rank * label_divisor + instance_id,
                     -1)
  coords = tf.stack(tf.meshgrid(tf.range(height), tf.range(width),
                                indexing='ij'), axis=-1)  # [H, W, 2] (y, x)
  # int64 sums: x sums of a 2048-wide map overflow int32 and lose float32 bits.
  stats = tf.math.unsorted_segment_sum(
      tf.concat([tf.ones([height, width, 1], tf.int64),
                 tf.cast(coords, tf.int64)], axis=-1),
      segment, num_segments)  # [S, 3]: area, sum y, sum x
  area = stats[:, 0]
  centers = tf.cast(tf.round(
      tf.cast(stats[:, 1:], tf.float64) /
      tf.cast(tf.maximum(area, 1), tf.float64)[:, tf.newaxis]), tf.int32)
  is_instance = area > 0
  is_small = tf.logical_and(is_instance, area < small_instance_area)

  per_pixel = tf.gather(
      tf.concat([centers, tf.cast(is_small, tf.int32)[:, tf.newaxis]], -1),
      tf.maximum(segment, 0))  # [H, W, 3]: center y, center x, is small
  offset = tf.where(instance_mask[..., tf.newaxis],
                    tf.cast(per_pixel[..., :2] - coords, tf.float32), 0.0)
  small_pixels = tf.logical_and(instance_mask, per_pixel[..., 2] > 0)
  semantic_weights = tf.where(small_pixels, float(small_instance_weight), 1.0)
  semantic_weights = tf.where(semantic_void, 0.0, semantic_weights)

  instance_centers = tf.boolean_mask(centers, is_instance)
  heatmap = _stamp_gaussians(instance_centers[:, 0], instance_centers[:, 1],
                             height, width, sigma)

  targets = {
      common.GT_SEMANTIC: semantic,
      common.GT_SEMANTIC_WEIGHTS: semantic_weights,
      common.GT_CENTER_HEATMAP: heatmap[..., tf.newaxis],
      common.GT_CENTER_WEIGHTS: tf.cast(
          tf.logical_not(tf.logical_or(void, crowd)), tf.float32),
      common.GT_OFFSET: offset,
      common.GT_OFFSET_WEIGHTS: tf.cast(instance_mask, tf.float32),
  }
  for name, value in targets.items():
    value.set_shape(static_shape.concatenate(value.shape[2:]))
  return targets
