"""Strong augmentation of a Student's inputs: colour, grayscale, blur, cutout.

Self-training for segmentation gains most when the Student sees its
pseudo-labeled frames distorted while the Teacher labelled them clean (ST++,
Yang et al., CVPR 2022; Noisy Student's input noise): the Student cannot
simply copy the Teacher and must learn labels that hold under the distortion.
The recipe and its constants are ST++'s: colour jitter (brightness, contrast,
saturation 0.5, hue 0.25) with probability 0.8, grayscale 0.2, Gaussian blur
(sigma 0.1..2.0) 0.5, and cutout 0.5 (a box of 2%..40% of the crop, aspect
0.3..3.3, filled with random pixels, its labels void so that no loss is
taken where the content is gone).

Applied after the geometric augmentation (`augment.preprocess_for_training`)
and before the targets are encoded, so centers and offsets see the void box.
Pure TF, stateless: equal seeds give equal outputs.
"""

from typing import Tuple

import tensorflow as tf

JITTER_PROB = 0.8
BRIGHTNESS = CONTRAST = SATURATION = 0.5
HUE = 0.25
GRAYSCALE_PROB = 0.2
BLUR_PROB = 0.5
BLUR_SIGMA = (0.1, 2.0)
CUTOUT_PROB = 0.5
CUTOUT_AREA = (0.02, 0.4)
CUTOUT_ASPECT = (0.3, 1 / 0.3)


def _uniform(seed, low, high):
  return tf.random.stateless_uniform([], seed, low, high)


def color_jitter(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Brightness, contrast, saturation and hue of a [0, 255] image, randomly."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  image = image * _uniform(seeds[0], 1 - BRIGHTNESS, 1 + BRIGHTNESS)
  image = tf.clip_by_value(image, 0.0, 255.0)
  mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image))
  image = mean + (image - mean) * _uniform(seeds[1], 1 - CONTRAST,
                                            1 + CONTRAST)
  image = tf.clip_by_value(image, 0.0, 255.0)
  gray = tf.image.rgb_to_grayscale(image)
  image = gray + (image - gray) * _uniform(seeds[2], 1 - SATURATION,
                                            1 + SATURATION)
  image = tf.clip_by_value(image, 0.0, 255.0)
  image = tf.image.adjust_hue(image / 255.0, _uniform(seeds[3], -HUE, HUE))
  return tf.clip_by_value(image * 255.0, 0.0, 255.0)


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
  """Separable Gaussian blur of [H, W, C] with a 2*ceil(3*max sigma)+1 kernel."""
  radius = int(-(-3 * BLUR_SIGMA[1] // 1))
  x = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-0.5 * tf.square(x / sigma))
  kernel /= tf.reduce_sum(kernel)
  channels = image.shape[-1]
  batch = tf.pad(image[tf.newaxis], [[0, 0], [radius, radius],
                                     [radius, radius], [0, 0]], 'SYMMETRIC')
  rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
  cols = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
  batch = tf.nn.depthwise_conv2d(batch, rows, [1, 1, 1, 1], 'VALID')
  batch = tf.nn.depthwise_conv2d(batch, cols, [1, 1, 1, 1], 'VALID')
  return batch[0]


def cutout_box(size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """A random [H, W] bool box of CUTOUT_AREA of the crop, CUTOUT_ASPECT h/w."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  height = tf.cast(size[0], tf.float32)
  width = tf.cast(size[1], tf.float32)
  area = _uniform(seeds[0], *CUTOUT_AREA) * height * width
  log_aspect = _uniform(seeds[1], *[tf.math.log(a) for a in CUTOUT_ASPECT])
  aspect = tf.exp(log_aspect)
  box_h = tf.minimum(tf.sqrt(area * aspect), height)
  box_w = tf.minimum(tf.sqrt(area / aspect), width)
  top = _uniform(seeds[2], 0.0, 1.0) * (height - box_h)
  left = _uniform(seeds[3], 0.0, 1.0) * (width - box_w)
  ys = tf.range(height)[:, tf.newaxis]
  xs = tf.range(width)[tf.newaxis, :]
  return ((ys >= tf.floor(top)) & (ys < tf.floor(top + box_h)) &
          (xs >= tf.floor(left)) & (xs < tf.floor(left + box_w)))


def strong_augment(image: tf.Tensor, panoptic: tf.Tensor, seed: tf.Tensor,
                   void_id: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """ST++'s strong augmentation of an augmented training crop.

  Args:
    image: [H, W, 3] float32 in [0, 255] (static shape).
    panoptic: [H, W] int32 panoptic ids.
    seed: [2] integer seed.
    void_id: the void panoptic id, given to the cut-out pixels.

  Returns:
    (image [H, W, 3] float32 in [0, 255], panoptic [H, W] int32).
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)

  def chance(i, prob):
    return _uniform(seeds[i], 0.0, 1.0) < prob

  image = tf.cond(chance(0, JITTER_PROB),
                  lambda: color_jitter(image, seeds[1]), lambda: image)
  image = tf.cond(chance(2, GRAYSCALE_PROB),
                  lambda: tf.image.grayscale_to_rgb(
                      tf.image.rgb_to_grayscale(image)), lambda: image)
  sigma = _uniform(seeds[3], *BLUR_SIGMA)
  image = tf.cond(chance(4, BLUR_PROB),
                  lambda: gaussian_blur(image, sigma), lambda: image)
  box = tf.logical_and(cutout_box(tf.shape(panoptic), seeds[5]),
                       chance(6, CUTOUT_PROB))
  noise = tf.random.stateless_uniform(tf.shape(image), seeds[7], 0.0, 255.0)
  image = tf.where(box[..., tf.newaxis], noise, image)
  panoptic = tf.where(box, tf.constant(void_id, panoptic.dtype), panoptic)
  return image, panoptic
