"""Corner-aligned bilinear resizing, the convention every Panoptic-DeepLab map uses.

DeepLab2 (`model/utils.py`) resizes with `align_corners=True` and trains on odd
crops (1025 x 2049 = 64 * 16 + 1 by 128 * 16 + 1), so the corner pixels of every
feature map sit exactly on input pixels and a stride-s map upsamples by exactly
s. Offsets predicted on a coarse map are in that map's pixels; they become input
pixels by the same factor the map is stretched by, (H - 1) / (h - 1).
"""

from typing import Sequence, Union

import tensorflow as tf

Size = Union[Sequence[int], tf.Tensor]


def spatial_size(x: tf.Tensor) -> Size:
  """[H, W] of a [B, H, W, C] tensor: static ints when known, else a tensor."""
  static_hw = x.shape[1:3]
  if static_hw[0] is not None and static_hw[1] is not None:
    return [int(static_hw[0]), int(static_hw[1])]
  return tf.shape(x)[1:3]


def resize_align_corners(images: tf.Tensor, size: Size) -> tf.Tensor:
  """Bilinear resize of [B, h, w, C] to [B, H, W, C] with aligned corners.

  Returns the input unchanged when the static size already matches, so
  full-resolution maps cost nothing.
  """
  static_hw = images.shape[1:3]
  if (isinstance(size, (list, tuple)) and static_hw[0] == size[0]
      and static_hw[1] == size[1]):
    return images
  dtype = images.dtype
  resized = tf.compat.v1.image.resize_bilinear(
      tf.cast(images, tf.float32), size, align_corners=True)
  return tf.cast(resized, dtype)


def offset_scale(source_size: Size, target_size: Size) -> tf.Tensor:
  """[2] float32 (y, x) factors that convert source-map pixels to target pixels.

  The factor of a length-1 axis is taken as (T - 1) / 1: such a map has no
  geometry to preserve, and a finite factor keeps the output finite.
  """
  source = tf.cast(tf.convert_to_tensor(source_size), tf.float32)
  target = tf.cast(tf.convert_to_tensor(target_size), tf.float32)
  return (target - 1.0) / tf.maximum(source - 1.0, 1.0)


def resize_and_rescale_offsets(offsets: tf.Tensor, size: Size) -> tf.Tensor:
  """Resizes [B, h, w, 2] (y, x) offsets to [B, H, W, 2] in target pixels.

  Follows DeepLab2's `resize_and_rescale_offsets`: each axis is multiplied by
  (H - 1) / (h - 1), the stretch of aligned-corner resizing, so an offset that
  points from a pixel to its center on the coarse map still does so after
  upsampling.
  """
  source_size = tf.shape(offsets)[1:3]
  scale = offset_scale(source_size, size)
  scaled = tf.cast(offsets, tf.float32) * scale
  return tf.cast(resize_align_corners(scaled, size), offsets.dtype)
