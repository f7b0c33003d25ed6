"""Test-time augmentation: multi-scale and flipped inference averaged at input size.

Shared by pseudo-labeling, evaluation and export so all three see the same
aggregation. Follows DeepLab2 (`model/deeplab.py`, `_inference` and
`_resize_predictions`): for every scale (and its mirror) the image is resized with
aligned corners to `int((size - 1) * scale + 1)`, the model runs, its outputs are
flipped back (negating the x offset), resized back to the input size and averaged:
softmax probabilities, center heatmaps and offsets. Offsets are in the pixels of
the image the model saw; resizing back multiplies them by (H - 1) / (h - 1) per
axis, the exact aligned-corner stretch, which equals 1 / scale for these sizes.
"""

from typing import Callable, Dict, Sequence

import tensorflow as tf

from official_naive_student import common
from official_naive_student.modeling.layers import resize

ModelFn = Callable[[tf.Tensor], Dict[str, tf.Tensor]]


def scaled_size(size, scale: float):
  """DeepLab2's `scale_mutable_sequence`: int((s - 1) * scale + 1) per axis.

  Args:
    size: [H, W] as ints or an int tensor.
    scale: the input scale.

  Returns:
    The scaled [h, w]: ints for int input, else an int32 tensor.
  """
  if isinstance(size, (list, tuple)):
    return [int((float(s) - 1.0) * scale + 1.0) for s in size]
  return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)


def _flip_back(outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Mirrors [B, H, W, C] outputs back along W; offsets also negate x."""
  flipped = {k: tf.reverse(v, axis=[2]) for k, v in outputs.items()}
  offset = flipped[common.PRED_OFFSET]
  flipped[common.PRED_OFFSET] = offset * tf.constant([1.0, -1.0], offset.dtype)
  return flipped


def predict_with_tta(model_fn: ModelFn,
                     images: tf.Tensor,
                     scales: Sequence[float] = (1.0,),
                     flip: bool = False) -> Dict[str, tf.Tensor]:
  """Runs `model_fn` on rescaled (and mirrored) images and averages the outputs.

  Args:
    model_fn: images [B, h, w, 3] -> dict with common.PRED_SEMANTIC_LOGITS
      [B, h, w, C], PRED_CENTER_HEATMAP [B, h, w, 1] and PRED_OFFSET [B, h, w, 2]
      ((y, x) pixels of the h x w input, pointing to the center), all at the
      resolution of its input.
    images: [B, H, W, 3] images (cast to float32, values as the model expects).
    scales: input scales; 1.0 runs on the images as they are.
    flip: also run on horizontally mirrored images.

  Returns:
    Dict of float32 tensors at the input resolution, each the mean over the
    len(scales) * (1 + flip) views: common.PRED_SEMANTIC_PROBS [B, H, W, C]
    (softmax before averaging), PRED_CENTER_HEATMAP [B, H, W, 1] and PRED_OFFSET
    [B, H, W, 2] in (y, x) pixels of the input.
  """
  if not scales:
    raise ValueError('predict_with_tta needs at least one scale.')
  images = tf.cast(images, tf.float32)
  size = resize.spatial_size(images)
  totals = None
  for scale in scales:
    scaled = images
    if scale != 1.0:
      scaled = resize.resize_align_corners(images, scaled_size(size, scale))
    for mirrored in ((False, True) if flip else (False,)):
      view = tf.reverse(scaled, axis=[2]) if mirrored else scaled
      raw = model_fn(view)
      raw = {
          common.PRED_SEMANTIC_PROBS: tf.nn.softmax(
              tf.cast(raw[common.PRED_SEMANTIC_LOGITS], tf.float32), axis=-1),
          common.PRED_CENTER_HEATMAP: tf.cast(
              raw[common.PRED_CENTER_HEATMAP], tf.float32),
          common.PRED_OFFSET: tf.cast(raw[common.PRED_OFFSET], tf.float32),
      }
      if mirrored:
        raw = _flip_back(raw)
      resized = {
          common.PRED_SEMANTIC_PROBS: resize.resize_align_corners(
              raw[common.PRED_SEMANTIC_PROBS], size),
          common.PRED_CENTER_HEATMAP: resize.resize_align_corners(
              raw[common.PRED_CENTER_HEATMAP], size),
          common.PRED_OFFSET: resize.resize_and_rescale_offsets(
              raw[common.PRED_OFFSET], size),
      }
      totals = resized if totals is None else {
          k: totals[k] + v for k, v in resized.items()}
  num_views = float(len(scales) * (2 if flip else 1))
  return {k: v / num_views for k, v in totals.items()}
