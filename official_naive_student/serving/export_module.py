"""PanopticExportModule: the serving graph, pre- and post-processing included.

A client of the exported SavedModel needs nothing but TensorFlow (or TF Serving):
images go in as PNG/JPEG bytes or uint8 pixels, panoptic maps come out. The graph
runs exactly what evaluation runs (`core/evaluator.make_inference_fn`: float
cast, optional TTA, model, `PanopticDeepLabPostProcessor`), so a served model
labels an image as `train.py --mode eval` does; tests/serving check it bit for
bit. Signatures (the Model Garden's `image_bytes` / `image_tensor` pair):

  serving_default(encoded_images: string [B]) — PNG or JPEG bytes, decoded in the
    graph; all images of one request must have the same size.
  serve_images(images: uint8 [B, H, W, 3]) — any size.

Both return common.PRED_PANOPTIC int32 [B, H, W] (train_id * label_divisor +
instance), PRED_SEMANTIC int32 [B, H, W] (train ids), PRED_INSTANCE int32
[B, H, W] (class-agnostic ids, 0 = none), PRED_INSTANCE_SCORES float32 [B, K]
(score of instance k + 1), and with `include_semantic_probs` PRED_SEMANTIC_PROBS
float32 [B, H, W, C].

Inputs are declared with unknown rank on purpose: the graph's own asserts then
check rank, channels, sizes and bytes at run time, with messages that name the
input field, in every runtime (Python, TF Serving); with a declared rank,
Grappler folds such checks away and a wrong input fails deep inside the model.
The dtype is checked by the signature itself.
"""

import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from official_naive_student import common
from official_naive_student.dataloaders import augment
from official_naive_student.post_processing import tta

ENCODED_IMAGES = 'encoded_images'
IMAGES = 'images'
SERVING_DEFAULT = 'serving_default'
SERVE_IMAGES = 'serve_images'
OUTPUT_KEYS = (common.PRED_PANOPTIC, common.PRED_SEMANTIC,
               common.PRED_INSTANCE, common.PRED_INSTANCE_SCORES)

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


def make_tta_fn(scales: Sequence[float] = (1.0,),
                flip: bool = False) -> Optional[Callable]:
  """`fn(model_fn, images)` for `make_inference_fn`, or None without TTA."""
  scales = tuple(float(s) for s in scales)
  if scales == (1.0,) and not flip:
    return None
  return lambda model_fn, images: tta.predict_with_tta(
      model_fn, images, scales=scales, flip=flip)


def _padded_shape(x: tf.Tensor, rank: int) -> tf.Tensor:
  """tf.shape(x) padded with zeros to at least `rank` entries (any input rank)."""
  return tf.pad(tf.shape(x), [[0, rank]])[:rank]


def _check_images(images: tf.Tensor) -> tf.Tensor:
  """Asserts uint8 `images` is [B > 0, H > 0, W > 0, 3]; returns it shaped.

  One assert with one condition, so the message never depends on which of
  several checks the executor happens to run first.
  """
  shape = _padded_shape(images, 4)
  valid = tf.logical_and(
      tf.equal(tf.rank(images), 4),
      tf.logical_and(tf.equal(shape[3], 3), tf.reduce_all(shape[:3] > 0)))
  check = tf.debugging.Assert(valid, [tf.strings.format(
      IMAGES + ' must be uint8 [batch > 0, height > 0, width > 0, 3] (RGB); '
      'got shape {}', [tf.shape(images)])])
  with tf.control_dependencies([check]):
    return tf.ensure_shape(tf.identity(images), [None, None, None, 3])


def decode_images(encoded: tf.Tensor) -> tf.Tensor:
  """string [B] PNG/JPEG bytes -> uint8 [B, H, W, 3] (RGB; grey is expanded).

  Raises (at run time) InvalidArgumentError naming `encoded_images` for a
  wrong rank, an empty batch, bytes that are not PNG/JPEG, or images of
  different sizes in one batch.
  """
  valid = tf.logical_and(tf.equal(tf.rank(encoded), 1), tf.size(encoded) > 0)
  check = tf.debugging.Assert(valid, [tf.strings.format(
      ENCODED_IMAGES + ' must be a 1-D batch of at least one PNG or JPEG '
      'string (string [batch]); got shape {}', [tf.shape(encoded)])])
  with tf.control_dependencies([check]):
    encoded = tf.reshape(encoded, [-1])

  def decode_one(data, index):
    is_image = tf.logical_or(
        tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC),
        tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC))
    check = tf.debugging.Assert(is_image, [tf.strings.format(
        ENCODED_IMAGES + '[{}] is not a PNG or JPEG image (its first bytes '
        'are neither signature); send the bytes of an image file (in JSON, '
        'base64-encoded as an object with the key b64)', [index])])
    with tf.control_dependencies([check]):
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
  """

  def __init__(self, model, post_processor,
               input_size: Optional[Tuple[int, int]] = None,
               tta_scales: Sequence[float] = (1.0,), tta_flip: bool = False,
               include_semantic_probs: bool = False, name: str = 'panoptic'):
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
    self._tta_fn = make_tta_fn(self.tta_scales, self.tta_flip)

  def _model_fn(self, images):
    return self.model(images, training=False)

  def predict(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """float32 [B, H, W, 3] in [0, 255] -> the output dict, as evaluation.

    The same steps as `evaluator.make_inference_fn`'s `infer` (which the tests
    compare against), plus the optional padding to `input_size`.
    """
    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    if self.input_size is not None:
      images = self._pad(images)
    outputs = (self._tta_fn(self._model_fn, images) if self._tta_fn
               else self._model_fn(images))
    predictions = self.post_processor(outputs)
    result = {key: predictions[key] for key in OUTPUT_KEYS}
    if self.include_semantic_probs:
      probs = outputs.get(common.PRED_SEMANTIC_PROBS)
      if probs is None:
        probs = tf.nn.softmax(outputs[common.PRED_SEMANTIC_LOGITS], axis=-1)
      result[common.PRED_SEMANTIC_PROBS] = probs
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
    return self.predict(decode_images(encoded_images))

  @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name=IMAGES)])
  def serve_images(self, images):
    return self.predict(_check_images(images))

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """{signature name: concrete function} for `tf.saved_model.save`."""
    return {
        SERVING_DEFAULT: self.serve_encoded_images.get_concrete_function(),
        SERVE_IMAGES: self.serve_images.get_concrete_function(),
    }
