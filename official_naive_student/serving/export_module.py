"""PanopticExportModule: the serving graph, pre- and post-processing included.

A client of the exported SavedModel needs nothing but TensorFlow (or TF Serving):
images go in as PNG/JPEG bytes or uint8 pixels, panoptic maps come out. The graph
runs exactly what evaluation runs (`core/inference.predict`: float cast,
optional TTA, model, `PanopticDeepLabPostProcessor`), so a served model
labels an image as `train.py --mode eval` does; tests/serving check it bit for
bit. Signatures (the Model Garden's `image_bytes` / `image_tensor` pair):

  serving_default(encoded_images: string [B]) — PNG or JPEG bytes, decoded in the
    graph; all images of one request must have the same size.
  serve_images(images: uint8 [B, H, W, 3]) — any size within the pixel budget.

Both return common.PRED_PANOPTIC int32 [B, H, W] (train_id * label_divisor +
instance), PRED_SEMANTIC int32 [B, H, W] (train ids), PRED_INSTANCE int32
[B, H, W] (class-agnostic ids, 0 = none), PRED_INSTANCE_SCORES float32 [B, K]
(score of instance k + 1), and with `include_semantic_probs` PRED_SEMANTIC_PROBS
float32 [B, H, W, C].

Each image must fit a pixel budget, `max_pixels`, counted at the largest TTA
scale (default: what a 1024x2048 frame needs there): one small PNG of a huge
constant image would otherwise cost many GB and seconds. Encoded images are
measured from their headers (PNG IHDR, JPEG SOF), before they are decoded.

Inputs are declared with unknown rank on purpose: the graph's own asserts then
check rank, channels, sizes and bytes at run time, with messages that name the
input field, in every runtime (Python, TF Serving); with a declared rank,
Grappler folds such checks away and a wrong input fails deep inside the model.
The dtype is checked by the signature itself.
"""

import re
from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import inference
from official_naive_student.dataloaders import augment

ENCODED_IMAGES = 'encoded_images'
IMAGES = 'images'
SERVING_DEFAULT = 'serving_default'
SERVE_IMAGES = 'serve_images'
OUTPUT_KEYS = (common.PRED_PANOPTIC, common.PRED_SEMANTIC,
               common.PRED_INSTANCE, common.PRED_INSTANCE_SCORES)

# A Cityscapes frame: the default budget is what it needs at the largest scale.
DEFAULT_FRAME_SIZE = (1024, 2048)

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_MAGIC = b'\xff\xd8\xff'


def error_message(error: Exception) -> str:
  """An error's text on one line; for a failed assert, only the assert's text.

  The signatures' asserts name the offending field; TF wraps that text in
  lines of graph-execution boilerplate that callers should not have to read.
  """
  text = getattr(error, 'message', None) or str(error)
  match = re.search(r'assertion failed: \[(.*?)\]\s*(\n|\[\[|$)', text, re.S)
  return ' '.join((match.group(1) if match else text).split())


def default_max_pixels(tta_scales: Sequence[float] = (1.0,),
                       input_size: Optional[Tuple[int, int]] = None) -> int:
  """Pixels a frame (`input_size`, else 1024x2048) needs at the largest scale."""
  height, width = input_size or DEFAULT_FRAME_SIZE
  return int(height * width * max(float(s) for s in tta_scales) ** 2)


class PixelBudget:
  """Refuses images with more than `max_pixels` at the largest TTA scale.

  Args:
    max_pixels: the budget, in pixels the model processes; 0 or None: none.
    tta_scales: the export's scales (an image of H x W costs H * W * s^2).
  """

  def __init__(self, max_pixels: Optional[int], tta_scales: Sequence[float]):
    self.max_pixels = int(max_pixels or 0)
    scale = max(float(s) for s in tta_scales)
    self.max_image_pixels = int(self.max_pixels / scale ** 2)
    self._hint = (f'at most {self.max_image_pixels} pixels per image (a budget '
                  f'of {self.max_pixels} pixels at the largest TTA scale '
                  f'{scale:g}); send a smaller image or export with a larger '
                  '--max_pixels')

  def check(self, size: tf.Tensor, name: str = IMAGES,
            name_args: Sequence[tf.Tensor] = ()) -> Optional[tf.Operation]:
    """An assert that an image of `size` (height, width) is within budget.

    Args:
      size: int [2], (height, width).
      name: the image in the message, a `tf.strings.format` template filled
        with `name_args` (e.g. 'encoded_images[{}]' and the index).
      name_args: its values.

    Returns:
      The assert op, or None without a budget.
    """
    if not self.max_pixels:
      return None
    size = tf.cast(size, tf.int64)
    return tf.debugging.Assert(
        size[0] * size[1] <= self.max_image_pixels, [tf.strings.format(
            name + ' is {}x{} (height x width); this export takes ' +
            self._hint, [*name_args, size[0], size[1]])])


def _control(check: Optional[tf.Operation], tensor: tf.Tensor) -> tf.Tensor:
  """`tensor`, computed only after `check` passed (if any)."""
  if check is None:
    return tensor
  with tf.control_dependencies([check]):
    return tf.identity(tensor)


def encoded_image_size(data: tf.Tensor) -> tf.Tensor:
  """int64 [2] (height, width) of PNG or JPEG bytes, from the header only.

  PNG: the big-endian width and height of the IHDR chunk at bytes 16..24;
  JPEG: `tf.image.extract_jpeg_shape` (reads up to the frame header).
  """
  def png_size():
    head = tf.strings.substr(data, 0, 24) + b'\0' * 24  # Short: size 0.
    octets = tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.uint8)
    width_height = tf.reduce_sum(  # Two big-endian uint32.
        tf.reshape(tf.cast(octets, tf.int64), [2, 4]) * [1 << 24, 1 << 16,
                                                          1 << 8, 1], axis=1)
    return tf.reverse(width_height, [0])

  def jpeg_size():
    return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

  return tf.cond(tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC),
                 png_size, jpeg_size)


def _has_tail_marker(data: tf.Tensor, marker: bytes,
                     window: int = 1024) -> tf.Tensor:
  """Whether `marker` occurs in the last `window` bytes of `data`.

  A PNG ends with its IEND chunk; a file cut short has none. Decoders say
  only 'Invalid PNG data', so this finds which image of a batch it was; the
  window tolerates a little padding after the end.
  """
  length = tf.minimum(tf.strings.length(data), window)
  tail = tf.io.decode_raw(tf.strings.substr(data, -length, length), tf.uint8)
  starts = tf.maximum(tf.size(tail) - len(marker) + 1, 0)
  found = tf.ones([starts], tf.bool)
  for offset, byte in enumerate(marker):
    found = tf.logical_and(found, tf.equal(tail[offset:offset + starts], byte))
  return tf.reduce_any(found)


def _padded_shape(x: tf.Tensor, rank: int) -> tf.Tensor:
  """tf.shape(x) padded with zeros to at least `rank` entries (any input rank)."""
  return tf.pad(tf.shape(x), [[0, rank]])[:rank]


def _check_images(images: tf.Tensor,
                  budget: Optional[PixelBudget] = None) -> tf.Tensor:
  """Asserts uint8 `images` is [B > 0, H > 0, W > 0, 3]; returns it shaped.

  One assert with one condition, so the message never depends on which of
  several checks the executor happens to run first; the pixel budget is
  checked after it.
  """
  shape = _padded_shape(images, 4)
  valid = tf.logical_and(
      tf.equal(tf.rank(images), 4),
      tf.logical_and(tf.equal(shape[3], 3), tf.reduce_all(shape[:3] > 0)))
  check = tf.debugging.Assert(valid, [tf.strings.format(
      IMAGES + ' must be uint8 [batch > 0, height > 0, width > 0, 3] (RGB); '
      'got shape {}', [tf.shape(images)])])
  with tf.control_dependencies([check]):
    images = tf.identity(images)
  if budget is not None:
    images = _control(budget.check(shape[1:3]), images)
  return tf.ensure_shape(images, [None, None, None, 3])


def decode_images(encoded: tf.Tensor,
                  budget: Optional[PixelBudget] = None) -> tf.Tensor:
  """string [B] PNG/JPEG bytes -> uint8 [B, H, W, 3] (RGB; grey is expanded).

  Raises (at run time) InvalidArgumentError naming `encoded_images` for a
  wrong rank, an empty batch, bytes that are not PNG/JPEG, an image over the
  pixel `budget` (read from its header, before decoding), a PNG cut short, or
  images of different sizes in one batch (with the item's index).
  """
  valid = tf.logical_and(tf.equal(tf.rank(encoded), 1), tf.size(encoded) > 0)
  check = tf.debugging.Assert(valid, [tf.strings.format(
      ENCODED_IMAGES + ' must be a 1-D batch of at least one PNG or JPEG '
      'string (string [batch]); got shape {}', [tf.shape(encoded)])])
  with tf.control_dependencies([check]):
    encoded = tf.reshape(encoded, [-1])

  def decode_one(data, index):
    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC)
    is_image = tf.logical_or(
        is_png, tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC))
    check = tf.debugging.Assert(is_image, [tf.strings.format(
        ENCODED_IMAGES + '[{}] is not a PNG or JPEG image (its first bytes '
        'are neither signature); send the bytes of an image file (in JSON, '
        'base64-encoded as an object with the key b64)', [index])])
    data = _control(check, data)
    if budget is not None:
      data = _control(budget.check(encoded_image_size(data),
                                   ENCODED_IMAGES + '[{}]', [index]), data)
    complete = tf.logical_or(tf.logical_not(is_png),
                             _has_tail_marker(data, b'IEND'))
    data = _control(tf.debugging.Assert(complete, [tf.strings.format(
        ENCODED_IMAGES + '[{}] is a truncated PNG (no IEND chunk at its end)',
        [index])]), data)
    return tf.io.decode_image(data, channels=3, dtype=tf.uint8,
                              expand_animations=False)

  first = decode_one(encoded[0], tf.constant(0))
  size = tf.shape(first)[:2]

  def decode_same_size(args):
    data, index = args
    image = decode_one(data, index)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(tf.shape(image)[:2], size)),
        [tf.strings.format(
            ENCODED_IMAGES + '[{}] is {} but the first image is {} (height, '
            'width); all images of one request must have the same size',
            [index, tf.shape(image)[:2], size])])
    with tf.control_dependencies([check]):
      return tf.identity(image)

  images = tf.map_fn(decode_same_size, (encoded, tf.range(tf.size(encoded))),
                     fn_output_signature=tf.TensorSpec([None, None, 3],
                                                       tf.uint8))
  return tf.ensure_shape(images, [None, None, None, 3])


class PanopticExportModule(tf.Module):
  """Serving signatures around a raw-output model and its post-processor.

  Args:
    model: images float32 [B, H, W, 3] in [0, 255] -> raw output dict
      (`PanopticDeepLab`), weights already restored.
    post_processor: the task's `PanopticDeepLabPostProcessor`.
    input_size: optional (height, width): images are padded at the bottom and
      right with the mean pixel to this size (as evaluation's `eval_pad_size`)
      and the predictions cropped back, so the model always sees one shape
      (XLA, TPU, steady latency). Larger images are rejected. None: any size.
    tta_scales: test-time scales (DeepLab2 aggregation, `post_processing/tta`).
    tta_flip: also run on mirrored images.
    include_semantic_probs: also return per-class probabilities [B, H, W, C].
    max_pixels: refuse an image needing more pixels at the largest TTA scale
      (`PixelBudget`); default `default_max_pixels`; 0: any size.
  """

  def __init__(self, model, post_processor,
               input_size: Optional[Tuple[int, int]] = None,
               tta_scales: Sequence[float] = (1.0,), tta_flip: bool = False,
               include_semantic_probs: bool = False,
               max_pixels: Optional[int] = None, name: str = 'panoptic'):
    super().__init__(name=name)
    if input_size is not None:
      input_size = tuple(int(s) for s in input_size)
      if len(input_size) != 2 or min(input_size) <= 0:
        raise ValueError(f'input_size must be (height, width) > 0, got '
                         f'{input_size}')
    self.model = model
    self.post_processor = post_processor
    self.input_size = input_size
    self.tta_scales = tuple(float(s) for s in tta_scales)
    self.tta_flip = bool(tta_flip)
    self.include_semantic_probs = include_semantic_probs
    self._tta_fn = inference.make_tta_fn(self.tta_scales, self.tta_flip,
                                         plain_at_identity=True)
    if max_pixels is None:
      max_pixels = default_max_pixels(self.tta_scales, input_size)
    if max_pixels < 0:
      raise ValueError(f'max_pixels must be >= 0 (0: no limit), got '
                       f'{max_pixels}')
    self.budget = PixelBudget(max_pixels, self.tta_scales)

  def predict(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """float32 [B, H, W, 3] in [0, 255] -> the output dict, as evaluation.

    `inference.predict`, as evaluation runs it, after the optional padding to
    `input_size`.
    """
    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    if self.input_size is not None:
      images = self._pad(images)
    predictions = inference.predict(
        self.model, self.post_processor, images, self._tta_fn,
        semantic_probs=self.include_semantic_probs)
    keys = OUTPUT_KEYS + ((common.PRED_SEMANTIC_PROBS,)
                          if self.include_semantic_probs else ())
    result = {key: predictions[key] for key in keys}
    if self.input_size is not None:
      result = {key: (value if key == common.PRED_INSTANCE_SCORES
                      else value[:, :height, :width])
                for key, value in result.items()}
    return result

  def _pad(self, images: tf.Tensor) -> tf.Tensor:
    """Pads [B, h, w, 3] bottom/right to `input_size` (evaluation's padding)."""
    target_h, target_w = self.input_size
    margin = tf.constant([target_h, target_w], tf.int32) - tf.shape(images)[1:3]
    check = tf.debugging.assert_non_negative(
        margin, message=f'image larger than the exported input size '
        f'{target_h}x{target_w} (height x width); export with a larger '
        '--input_size or without it for any size')
    with tf.control_dependencies([check]):
      paddings = tf.stack([tf.zeros([2], tf.int32), margin], axis=1)
    paddings = tf.concat([[[0, 0]], paddings, [[0, 0]]], axis=0)
    images = tf.pad(images, paddings, constant_values=augment.MEAN_PIXEL)
    return tf.ensure_shape(images, [None, target_h, target_w, 3])

  @tf.function(input_signature=[
      tf.TensorSpec(None, tf.string, name=ENCODED_IMAGES)])
  def serve_encoded_images(self, encoded_images):
    return self.predict(decode_images(encoded_images, self.budget))

  @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name=IMAGES)])
  def serve_images(self, images):
    return self.predict(_check_images(images, self.budget))

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """{signature name: concrete function} for `tf.saved_model.save`."""
    return {
        SERVING_DEFAULT: self.serve_encoded_images.get_concrete_function(),
        SERVE_IMAGES: self.serve_images.get_concrete_function(),
    }
