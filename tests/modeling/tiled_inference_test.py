"""Tests for whole-image inference in tiles."""

import keras
import tensorflow as tf
from absl.testing import parameterized

from official_naive_student import common
from official_naive_student.modeling import presets
from official_naive_student.modeling import tiled_inference

_SHAPE = (1, 129, 257, 3)


def _model(**overrides):
  keras.utils.set_random_seed(0)
  model = presets.build_panoptic_deeplab('tiny', num_classes=7, sync_bn=False,
                                         **overrides)
  model(tf.zeros(_SHAPE), training=False)
  return model


def _images():
  # Smooth random images: a random 5 x 9 field resized, plus a little noise.
  coarse = tf.random.stateless_uniform((1, 5, 9, 3), (4, 2), maxval=255.0)
  smooth = tf.image.resize(coarse, _SHAPE[1:3])
  noise = tf.random.stateless_uniform(_SHAPE, (4, 3), maxval=20.0)
  return smooth + noise


class TileStartsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (1025, 513, 0, 16, [0, 512]), (2049, 1025, 0, 16, [0, 1024]),
      (100, 100, 0, 1, [0]), (50, 100, 0, 1, [0]),
      (1025, 513, 128, 16, [0, 256, 512]), (10, 4, 1, 1, [0, 3, 6]))
  def test_starts(self, size, tile, overlap, align, expected):
    self.assertEqual(tiled_inference.tile_starts(size, tile, overlap, align),
                     expected)

  @parameterized.parameters((1025, 289, 64, 16), (2049, 385, 100, 16),
                            (97, 33, 5, 4), (1000, 333, 0, 1))
  def test_cover_overlap_align(self, size, tile, overlap, align):
    starts = tiled_inference.tile_starts(size, tile, overlap, align)
    self.assertEqual(starts[0], 0)
    self.assertEqual(starts[-1], size - tile)
    for a, b in zip(starts, starts[1:]):
      self.assertGreaterEqual(a + tile - b, overlap)  # Overlap, so covered.
    for s in starts[:-1]:
      self.assertEqual(s % align, 0)

  def test_bad_overlap(self):
    with self.assertRaisesRegex(ValueError, 'min_overlap'):
      tiled_inference.tile_starts(100, 10, 10)


class TiledInferenceTest(tf.test.TestCase):

  def test_one_tile_equals_whole_image(self):
    model = _model()
    images = _images()
    model_fn = lambda x: model(x, training=False)
    whole = model_fn(images)
    for tile_size in ((129, 257), (300, 300)):
      tiled = tiled_inference.TiledInference(tile_size)
      self.assertLen(tiled.tiles(129, 257), 1)
      outputs = tiled(model_fn, images)
      self.assertCountEqual(outputs, whole)
      for key in whole:
        self.assertAllClose(outputs[key], whole[key], rtol=1e-6, atol=1e-6)

  def test_stitching_is_exact_for_a_pixelwise_model(self):
    images = _images()

    def model_fn(x):
      return {'a': tf.sin(x[..., :2] / 40.0), 'b': x[..., 2:] ** 2}

    tiled = tiled_inference.TiledInference((65, 129), min_overlap=(20, 40))
    self.assertEqual(len(tiled.tiles(129, 257)), 9)
    outputs = tiled(model_fn, images)
    whole = model_fn(images)
    for key in whole:
      self.assertAllClose(outputs[key], whole[key], rtol=1e-5, atol=1e-5)

  def test_two_by_two_tiles(self):
    # No image pooling: a zero kernel makes the pooling branch a constant 0
    # (ReLU of BN of 0 with inference statistics), whatever the tile sees. And
    # ASPP rates of 1: at the default 6, 12, 18 (96 to 288 pixels at stride
    # 16) every pixel of these small tiles sees a tile border, and the random
    # network's logits differ by less than that changes them.
    model = _model(atrous_rates=(1, 1, 1))
    for decoder in (model.semantic_decoder, model.instance_decoder):
      kernel = decoder.aspp.pool_conv.conv.kernel
      kernel.assign(tf.zeros_like(kernel))
    images = _images()
    model_fn = tf.function(lambda x: model(x, training=False))
    whole = model_fn(images)
    # 97 = 6 * 16 + 1 and 161 = 10 * 16 + 1: grids aligned with the image's.
    tiled = tiled_inference.TiledInference((97, 161), align=16)
    self.assertEqual(tiled.tiles(129, 257),
                     [(0, 0, 97, 161), (0, 96, 97, 161),
                      (32, 0, 97, 161), (32, 96, 97, 161)])
    outputs = tf.function(lambda x: tiled(model_fn, x))(images)
    for key in whole:
      self.assertEqual(outputs[key].shape, whole[key].shape)
      self.assertEqual(outputs[key].dtype, tf.float32)
      # The image's corner is in the first tile only, far from its borders
      # inside the image: the same features as the whole image there.
      self.assertAllClose(outputs[key][:, :16, :16], whole[key][:, :16, :16],
                          rtol=1e-4, atol=1e-6)
    semantic = tf.argmax(outputs[common.PRED_SEMANTIC_LOGITS], -1)
    expected = tf.argmax(whole[common.PRED_SEMANTIC_LOGITS], -1)
    agreement = float(tf.reduce_mean(tf.cast(semantic == expected,
                                             tf.float32)))
    self.assertGreater(agreement, 0.85)

  def test_needs_static_size(self):
    tiled = tiled_inference.TiledInference((65, 65))
    fn = tf.function(lambda x: tiled(lambda t: {'a': t}, x),
                     input_signature=[tf.TensorSpec([1, None, None, 3])])
    with self.assertRaisesRegex(ValueError, 'static'):
      fn.get_concrete_function()


if __name__ == '__main__':
  tf.test.main()
