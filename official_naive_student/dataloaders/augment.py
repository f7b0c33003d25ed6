"""Joint image + panoptic-map augmentation (pure TF, stateless, graph safe).

Training follows DeepLab2's `data/preprocessing/input_preprocessing.py`:
random scale (bilinear image, nearest label, `align_corners=True`, new size
int(size * scale)), pad to at least the crop size (image with the mean pixel
127.5, label with the void panoptic id) at a random offset, random crop, then a
random left-right flip with probability 0.5. Targets (centers, offsets) are
computed after augmentation by `targets.encode_targets`, so they are always
consistent with the augmented map; `flip_targets_left_right` flips an already
encoded target or prediction dict (test-time augmentation, tests).

Randomness uses only `tf.random.stateless_*` ops driven by a per-example seed,
a [2] int32/int64 tensor, so a pipeline is reproducible given its seeds.

Shapes: image [H, W, C] (any real dtype; outputs are float32 in the input's
range), panoptic [H, W] integer ids (outputs int32).
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from official_naive_student import common

MEAN_PIXEL = 127.5


def _split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
  """Returns [num, 2] independent seeds derived from a [2] seed."""
  return tf.random.experimental.stateless_split(
      tf.cast(seed, tf.int64), num=num)


def random_scale_factor(seed: tf.Tensor, min_scale: float = 0.5,
                        max_scale: float = 2.0,
                        scale_step: float = 0.25) -> tf.Tensor:
  """Draws a scale factor as DeepLab2's `get_random_scale` does, statelessly.

  Args:
    seed: [2] integer seed.
    min_scale: smallest factor.
    max_scale: largest factor.
    scale_step: with 0 the factor is uniform in [min_scale, max_scale);
      otherwise it is one of min_scale, min_scale + step, ..., max_scale,
      each equally likely.

  Returns:
    Scalar float32 scale factor.
  """
  if min_scale <= 0 or min_scale > max_scale:
    raise ValueError(
        f'Need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}.')
  if min_scale == max_scale:
    return tf.constant(min_scale, tf.float32)
  if scale_step == 0:
    return tf.random.stateless_uniform(
        [], seed, minval=min_scale, maxval=max_scale, dtype=tf.float32)
  num_steps = int(round((max_scale - min_scale) / scale_step)) + 1
  factors = tf.constant(
      np.linspace(min_scale, max_scale, num_steps), tf.float32)
  index = tf.random.stateless_uniform(
      [], seed, minval=0, maxval=num_steps, dtype=tf.int32)
  return tf.gather(factors, index)


def scale_image_and_label(
    image: tf.Tensor, panoptic: tf.Tensor,
    scale: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Resizes image (bilinear) and panoptic map (nearest) by `scale`.

  Args:
    image: [H, W, C] image.
    panoptic: [H, W] integer panoptic ids.
    scale: scalar scale factor; the new size is int(H * scale) x
      int(W * scale), corners aligned (DeepLab2).

  Returns:
    (image [h, w, C] float32, panoptic [h, w] int32).
  """
  image = tf.cast(image, tf.float32)
  channels = image.shape[-1]
  size = tf.cast(tf.shape(image)[:2], tf.float32)
  new_size = tf.cast(size * tf.cast(scale, tf.float32), tf.int32)
  # The raw ops keep TF1's align_corners=True sampling, which tf.image.resize
  # (half-pixel centers) no longer offers.
  image = tf.raw_ops.ResizeBilinear(
      images=image[tf.newaxis], size=new_size, align_corners=True)[0]
  panoptic = tf.raw_ops.ResizeNearestNeighbor(
      images=tf.cast(panoptic, tf.int32)[tf.newaxis, :, :, tf.newaxis],
      size=new_size, align_corners=True)[0, :, :, 0]
  image.set_shape([None, None, channels])
  return image, panoptic


def random_scale(image: tf.Tensor, panoptic: tf.Tensor, seed: tf.Tensor,
                 min_scale: float = 0.5, max_scale: float = 2.0,
                 scale_step: float = 0.25) -> Tuple[tf.Tensor, tf.Tensor]:
  """Scales image and panoptic map by one random factor.

  Args:
    image: [H, W, C] image.
    panoptic: [H, W] integer panoptic ids.
    seed: [2] integer seed.
    min_scale: see `random_scale_factor`.
    max_scale: see `random_scale_factor`.
    scale_step: see `random_scale_factor`.

  Returns:
    (image [h, w, C] float32, panoptic [h, w] int32).
  """
  scale = random_scale_factor(seed, min_scale, max_scale, scale_step)
  return scale_image_and_label(image, panoptic, scale)


def sample_crop_offset(size: tf.Tensor, crop_size: Sequence[int],
                       seed: tf.Tensor) -> tf.Tensor:
  """Draws the top-left corner of a crop window, uniformly per axis.

  Args:
    size: [2] int32 (height, width) of the map to crop.
    crop_size: (crop_height, crop_width).
    seed: [2] integer seed.

  Returns:
    [2] int32 offset in [min(0, size - crop), max(0, size - crop)] per axis; a
    negative offset puts the map at -offset inside a larger crop (padding
    before it), as DeepLab2's random pad offset followed by its random crop.
  """
  margin = tf.cast(size, tf.int32) - tf.constant(list(crop_size), tf.int32)
  low = tf.minimum(margin, 0)
  span = tf.abs(margin)
  u = tf.random.stateless_uniform([2], seed)
  step = tf.cast(u * tf.cast(span + 1, tf.float32), tf.int32)
  return low + tf.minimum(step, span)


def crop_or_pad(
    image: tf.Tensor, panoptic: tf.Tensor, offset: tf.Tensor,
    crop_height: int, crop_width: int, label_pad_value: int,
    image_pad_value: float = MEAN_PIXEL) -> Tuple[tf.Tensor, tf.Tensor]:
  """Takes the [crop_height, crop_width] window at `offset`, padding outside.

  Args:
    image: [H, W, C] image.
    panoptic: [H, W] integer panoptic ids.
    offset: [2] int32 (y, x) of the window's top-left corner; the window may
      reach past any side of the map (see `sample_crop_offset`).
    crop_height: output height (Python int).
    crop_width: output width (Python int).
    label_pad_value: panoptic id of pixels outside the map (the void id).
    image_pad_value: value of image pixels outside the map.

  Returns:
    (image [crop_height, crop_width, C] float32,
     panoptic [crop_height, crop_width] int32), static shapes.
  """
  image = tf.cast(image, tf.float32)
  channels = image.shape[-1]
  panoptic = tf.cast(panoptic, tf.int32)
  size = tf.shape(panoptic)
  offset = tf.cast(offset, tf.int32)
  pad_before = tf.maximum(-offset, 0)
  pad_after = tf.maximum(
      offset + tf.constant([crop_height, crop_width]) - size, 0)
  paddings = tf.stack([pad_before, pad_after], axis=1)  # [2, 2]
  image = tf.pad(image, tf.concat([paddings, [[0, 0]]], axis=0),
                 constant_values=image_pad_value)
  panoptic = tf.pad(panoptic, paddings, constant_values=label_pad_value)
  start = tf.maximum(offset, 0)
  image = tf.slice(image, tf.concat([start, [0]], axis=0),
                   [crop_height, crop_width, -1])
  panoptic = tf.slice(panoptic, start, [crop_height, crop_width])
  image.set_shape([crop_height, crop_width, channels])
  panoptic.set_shape([crop_height, crop_width])
  return image, panoptic


def random_crop_or_pad(
    image: tf.Tensor, panoptic: tf.Tensor, crop_height: int, crop_width: int,
    seed: tf.Tensor, label_pad_value: int,
    image_pad_value: float = MEAN_PIXEL) -> Tuple[tf.Tensor, tf.Tensor]:
  """Pads to at least the crop size at a random offset, then crops randomly.

  Along each axis, a map smaller than the crop is placed at a random offset
  inside the crop (the rest is padding); a larger one is cropped at a random
  offset. Padded label pixels get `label_pad_value` (the void panoptic id,
  ignore_label * label_divisor), padded image pixels `image_pad_value`.

  Args:
    image: [H, W, C] image.
    panoptic: [H, W] integer panoptic ids.
    crop_height: output height (Python int).
    crop_width: output width (Python int).
    seed: [2] integer seed.
    label_pad_value: panoptic id of padded pixels.
    image_pad_value: value of padded image pixels.

  Returns:
    (image [crop_height, crop_width, C] float32,
     panoptic [crop_height, crop_width] int32), static shapes.
  """
  offset = sample_crop_offset(tf.shape(panoptic)[:2], (crop_height, crop_width),
                              seed)
  return crop_or_pad(image, panoptic, offset, crop_height, crop_width,
                     label_pad_value, image_pad_value)


def _source_coords(start, length, in_size, scaled_size):
  """Source coordinates (align_corners) of scaled pixels start..start+length.

  Returns float32 [length] coordinates in [0, in_size - 1] (clamped) and a
  bool [length] mask of the pixels inside the scaled map.
  """
  pos = tf.range(start, start + length)
  valid = tf.logical_and(pos >= 0, pos < scaled_size)
  ratio = (tf.cast(in_size - 1, tf.float32) /
           tf.cast(tf.maximum(scaled_size - 1, 1), tf.float32))
  src = tf.cast(tf.clip_by_value(pos, 0, scaled_size - 1), tf.float32) * ratio
  return tf.minimum(src, tf.cast(in_size - 1, tf.float32)), valid


def scale_crop_or_pad(
    image: tf.Tensor, panoptic: tf.Tensor, scale: tf.Tensor,
    offset: tf.Tensor, crop_height: int, crop_width: int,
    label_pad_value: int,
    image_pad_value: float = MEAN_PIXEL) -> Tuple[tf.Tensor, tf.Tensor]:
  """`scale_image_and_label` then `crop_or_pad`, computing only the crop.

  Samples the crop window straight from the unscaled inputs with the same
  align-corners bilinear (image) and nearest (label) sampling, so a 2x scale
  of a 1024x2048 image never materializes its 2048x4096 intermediate.

  Args:
    image: [H, W, C] image.
    panoptic: [H, W] integer panoptic ids.
    scale: scalar scale factor; the scaled size is int(size * scale).
    offset: [2] int32 window corner in scaled coordinates (may be negative).
    crop_height: output height (Python int).
    crop_width: output width (Python int).
    label_pad_value: panoptic id of pixels outside the scaled map.
    image_pad_value: value of image pixels outside the scaled map.

  Returns:
    (image [crop_height, crop_width, C] float32,
     panoptic [crop_height, crop_width] int32), static shapes.
  """
  channels = image.shape[-1]
  panoptic = tf.cast(panoptic, tf.int32)
  size = tf.shape(panoptic)
  scaled = tf.cast(tf.cast(size, tf.float32) * tf.cast(scale, tf.float32),
                   tf.int32)
  offset = tf.cast(offset, tf.int32)
  src_y, valid_y = _source_coords(offset[0], crop_height, size[0], scaled[0])
  src_x, valid_x = _source_coords(offset[1], crop_width, size[1], scaled[1])
  valid = tf.logical_and(valid_y[:, tf.newaxis], valid_x[tf.newaxis, :])

  # Nearest: round half up, as ResizeNearestNeighbor(align_corners=True).
  near_y = tf.cast(tf.floor(src_y + 0.5), tf.int32)
  near_x = tf.cast(tf.floor(src_x + 0.5), tf.int32)
  label = tf.gather(tf.gather(panoptic, near_y, axis=0), near_x, axis=1)
  label = tf.where(valid, label, label_pad_value)

  # Bilinear, in ResizeBilinear's order: along x first, then along y.
  y0 = tf.cast(tf.floor(src_y), tf.int32)
  x0 = tf.cast(tf.floor(src_x), tf.int32)
  y1 = tf.minimum(y0 + 1, size[0] - 1)
  x1 = tf.minimum(x0 + 1, size[1] - 1)
  wy = (src_y - tf.floor(src_y))[:, tf.newaxis, tf.newaxis]
  wx = (src_x - tf.floor(src_x))[tf.newaxis, :, tf.newaxis]

  def along_x(rows):
    rows = tf.gather(image, rows, axis=0)  # cast only the sampled pixels
    left = tf.cast(tf.gather(rows, x0, axis=1), tf.float32)
    right = tf.cast(tf.gather(rows, x1, axis=1), tf.float32)
    return left + (right - left) * wx

  top = along_x(y0)
  out = top + (along_x(y1) - top) * wy
  out = tf.where(valid[..., tf.newaxis], out, image_pad_value)
  out.set_shape([crop_height, crop_width, channels])
  label.set_shape([crop_height, crop_width])
  return out, label


def random_flip_left_right(
    image: tf.Tensor, panoptic: tf.Tensor, seed: tf.Tensor,
    prob: float = 0.5) -> Tuple[tf.Tensor, tf.Tensor]:
  """Flips image and panoptic map left-right together with probability `prob`.

  Args:
    image: [H, W, C] image.
    panoptic: [H, W] panoptic ids.
    seed: [2] integer seed.
    prob: flip probability.

  Returns:
    (image, panoptic), both flipped or both unchanged; same shapes and dtypes.
  """
  do_flip = tf.random.stateless_uniform([], seed) < prob
  return tf.cond(
      do_flip,
      lambda: (tf.reverse(image, [1]), tf.reverse(panoptic, [1])),
      lambda: (tf.identity(image), tf.identity(panoptic)))


def flip_targets_left_right(targets: Dict[str, tf.Tensor],
                            batched: bool = False) -> Dict[str, tf.Tensor]:
  """Flips a dict of spatial maps left-right, negating the x offsets.

  Works on `encode_targets` outputs and on raw model outputs alike: every value
  of rank >= 2 (>= 3 if `batched`) is reversed along the width axis, and the
  value under `common.GT_OFFSET` (== `common.PRED_OFFSET`) also has its x
  channel negated, so flipped offsets point to the flipped centers. Other
  values (names, scalars) are returned unchanged.

  Args:
    targets: dict of [H, W, ...] tensors ([B, H, W, ...] if `batched`).
    batched: whether axis 0 is a batch axis.

  Returns:
    A new dict with the same keys, shapes and dtypes.
  """
  width_axis = 2 if batched else 1
  flipped = {}
  for key, value in targets.items():
    value = tf.convert_to_tensor(value)
    if value.shape.rank is None or value.shape.rank <= width_axis:
      flipped[key] = value
      continue
    value = tf.reverse(value, [width_axis])
    if key == common.GT_OFFSET:
      value = value * tf.constant([1, -1], value.dtype)
    flipped[key] = value
  return flipped


def preprocess_for_training(
    image: tf.Tensor, panoptic: tf.Tensor, seed: tf.Tensor,
    crop_size: Sequence[int], label_pad_value: int, min_scale: float = 0.5,
    max_scale: float = 2.0, scale_step: float = 0.25,
    image_pad_value: float = MEAN_PIXEL,
    flip_prob: float = 0.5) -> Tuple[tf.Tensor, tf.Tensor]:
  """Random scale, pad, crop and flip (DeepLab2's training preprocessing).

  Equal to `random_scale`, `crop_or_pad` at a `sample_crop_offset` window and
  `random_flip_left_right`, with the scale and crop fused in
  `scale_crop_or_pad` so that only the crop is ever resampled.

  Args:
    image: [H, W, C] image (uint8 or float in [0, 255]).
    panoptic: [H, W] integer panoptic ids.
    seed: [2] integer per-example seed; equal seeds give equal outputs.
    crop_size: (crop_height, crop_width) Python ints.
    label_pad_value: void panoptic id (ignore_label * label_divisor).
    min_scale: smallest scale factor.
    max_scale: largest scale factor.
    scale_step: scale grid step; 0 for a continuous scale.
    image_pad_value: value of padded image pixels (mean pixel 127.5).
    flip_prob: left-right flip probability.

  Returns:
    (image [crop_h, crop_w, C] float32, panoptic [crop_h, crop_w] int32).
  """
  scale_seed, crop_seed, flip_seed = tf.unstack(_split_seed(seed, 3))
  scale = random_scale_factor(scale_seed, min_scale, max_scale, scale_step)
  scaled_size = tf.cast(
      tf.cast(tf.shape(panoptic)[:2], tf.float32) * scale, tf.int32)
  offset = sample_crop_offset(scaled_size, crop_size, crop_seed)
  image, panoptic = scale_crop_or_pad(image, panoptic, scale, offset,
                                      crop_size[0], crop_size[1],
                                      label_pad_value, image_pad_value)
  return random_flip_left_right(image, panoptic, flip_seed, flip_prob)


def preprocess_for_eval(
    image: tf.Tensor, panoptic: Optional[tf.Tensor] = None,
    pad_to_size: Optional[Sequence[int]] = None,
    label_pad_value: Optional[int] = None,
    image_pad_value: float = MEAN_PIXEL
) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
  """Casts and optionally pads at the bottom and right to a fixed size.

  Args:
    image: [H, W, C] image.
    panoptic: optional [H, W] integer panoptic ids.
    pad_to_size: optional (height, width) >= (H, W); None keeps the size.
    label_pad_value: void panoptic id; required with `panoptic` and
      `pad_to_size`.
    image_pad_value: value of padded image pixels.

  Returns:
    (image float32 [h, w, C], panoptic int32 [h, w] or None), where (h, w) is
    `pad_to_size` (static) or (H, W).

  Raises:
    ValueError: `panoptic` and `pad_to_size` given without `label_pad_value`.
    tf.errors.InvalidArgumentError: the image is larger than `pad_to_size`.
  """
  image = tf.cast(image, tf.float32)
  if panoptic is not None:
    panoptic = tf.cast(panoptic, tf.int32)
  if pad_to_size is None:
    return image, panoptic
  if panoptic is not None and label_pad_value is None:
    raise ValueError('label_pad_value is required to pad a panoptic map.')
  height, width = pad_to_size
  channels = image.shape[-1]
  margin = tf.constant([height, width], tf.int32) - tf.shape(image)[:2]
  check = tf.debugging.assert_non_negative(
      margin, message=f'Image larger than pad_to_size {height}x{width}')
  with tf.control_dependencies([check]):
    paddings = tf.stack([tf.zeros([2], tf.int32), margin], axis=1)
  image = tf.pad(image, tf.concat([paddings, [[0, 0]]], axis=0),
                 constant_values=image_pad_value)
  image.set_shape([height, width, channels])
  if panoptic is not None:
    panoptic = tf.pad(panoptic, paddings, constant_values=label_pad_value)
    panoptic.set_shape([height, width])
  return image, panoptic
