"""Tests for DropPath and the residual blocks."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from official_naive_student.modeling.layers import blocks


class DropPathTest(tf.test.TestCase):

  def test_identity_at_inference(self):
    layer = blocks.DropPath(keep_prob=0.5, seed=1)
    x = tf.random.normal((8, 4, 4, 3))
    self.assertAllEqual(layer(x), x)
    self.assertAllEqual(layer(x, training=False), x)

  def test_training_drops_whole_samples_and_rescales(self):
    layer = blocks.DropPath(keep_prob=0.5, seed=1)
    x = tf.ones((256, 2, 2, 3))
    y = layer(x, training=True).numpy()
    per_sample = y.reshape(256, -1)
    # Every sample is either dropped (0) or kept and scaled by 1 / keep_prob.
    self.assertTrue(np.all(per_sample.min(1) == per_sample.max(1)))
    self.assertSetEqual(set(np.unique(per_sample)), {0.0, 2.0})
    self.assertBetween(float(y.mean()), 0.8, 1.2)

  def test_keep_prob_one_is_identity_in_training(self):
    x = tf.random.normal((4, 3, 3, 2))
    self.assertAllEqual(blocks.DropPath(keep_prob=1.0)(x, training=True), x)

  def test_rejects_bad_keep_prob(self):
    with self.assertRaisesRegex(ValueError, 'keep_prob'):
      blocks.DropPath(keep_prob=0.0)

  def test_config_round_trip(self):
    layer = blocks.DropPath(keep_prob=0.7, seed=3, name='dp')
    clone = blocks.DropPath.from_config(layer.get_config())
    self.assertEqual(clone.get_config(), layer.get_config())


class ResidualBlockTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (blocks.BasicBlock, (8, 16), 2, 1),
      (blocks.BasicBlock, (8, 8), 1, 2),
      (blocks.BottleneckBlock, (4, 4, 16), 2, 1),
      (blocks.BottleneckBlock, (4, 8, 8), 1, 4),
  )
  def test_output_shape(self, block_cls, filters, strides, rate):
    block = block_cls(filters=filters, strides=strides, dilation_rate=rate,
                      sync_bn=False)
    y = block(tf.random.normal((2, 16, 16, 8)))
    self.assertEqual(y.shape, (2, 16 // strides, 16 // strides, filters[-1]))
    self.assertEqual(block.compute_output_shape((2, 16, 16, 8)), y.shape)

  def test_projection_only_when_channels_change(self):
    same = blocks.BasicBlock(filters=(8, 8), sync_bn=False)
    same(tf.zeros((1, 4, 4, 8)))
    wider = blocks.BasicBlock(filters=(8, 16), sync_bn=False)
    wider(tf.zeros((1, 4, 4, 8)))
    self.assertIsNone(same.shortcut)
    self.assertIsNotNone(wider.shortcut)

  def test_bottleneck_param_count(self):
    # 1x1 8->4, 3x3 4->4, 1x1 4->16, shortcut 1x1 8->16, each + BN (4 per ch):
    # (32 + 16) + (144 + 16) + (64 + 64) + (128 + 64) = 528.
    block = blocks.BottleneckBlock(filters=(4, 4, 16), sync_bn=False)
    block(tf.zeros((1, 4, 4, 8)))
    self.assertEqual(block.count_params(), 528)

  def test_zero_init_residual_starts_as_identity(self):
    block = blocks.BasicBlock(filters=(8, 8), sync_bn=False)
    x = tf.random.normal((2, 6, 6, 8))
    self.assertAllClose(block(x, training=False), tf.nn.relu(x))
    block = blocks.BasicBlock(filters=(8, 8), zero_init_residual=False,
                              sync_bn=False)
    self.assertNotAllClose(block(x, training=False), tf.nn.relu(x))

  def test_drop_path_only_in_training(self):
    block = blocks.BottleneckBlock(filters=(4, 4, 8), drop_path_keep_prob=0.5,
                                   zero_init_residual=False, sync_bn=False)
    x = tf.random.normal((16, 4, 4, 8))
    self.assertAllEqual(block(x), block(x))
    outputs = [block(x, training=True).numpy() for _ in range(2)]
    self.assertNotAllClose(outputs[0], outputs[1])

  def test_rejects_wrong_filter_count(self):
    with self.assertRaisesRegex(ValueError, '2 filters'):
      blocks.BasicBlock(filters=(4, 4, 4))
    with self.assertRaisesRegex(ValueError, '3 filters'):
      blocks.BottleneckBlock(filters=(4, 4))

  @parameterized.parameters(blocks.BasicBlock, blocks.BottleneckBlock)
  def test_config_round_trip(self, block_cls):
    filters = (8, 16) if block_cls is blocks.BasicBlock else (4, 8, 16)
    block = block_cls(filters=filters, strides=2, drop_path_keep_prob=0.8,
                      sync_bn=False, name='b')
    x = tf.random.normal((1, 8, 8, 8))
    y = block(x)
    clone = block_cls.from_config(block.get_config())
    clone(x)
    clone.set_weights(block.get_weights())
    self.assertEqual(clone.get_config(), block.get_config())
    self.assertAllClose(clone(x), y)


if __name__ == '__main__':
  tf.test.main()
