"""Tests for the Wide-ResNet backbones and the ImageNet classifier on top."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from official_naive_student import common
from official_naive_student.modeling import imagenet_classifier
from official_naive_student.modeling.backbones import wide_resnet

_TINY = dict(width_multiplier=0.125, num_blocks=(1, 1, 1, 1, 1), sync_bn=False)


def _tiny(**kwargs):
  return wide_resnet.WideResNet(**{**_TINY, **kwargs})


def _rates(block):
  return [layer.conv.dilation_rate[0] for layer in block.branch]


class WideResNetTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ('wide_resnet41', 8, 'naive_student'), (41, 16, 'naive_student'),
      (41, 32, 'naive_student'), (38, 16, 'naive_student'),
      ('wide_resnet41', 8, 'deeplab2'), (41, 16, 'deeplab2'),
      (41, 32, 'deeplab2'), (38, 16, 'deeplab2'))
  def test_endpoint_shapes(self, depth, output_stride, layout):
    # Two blocks in stage 5 keep WR-38's B7 (4096 channels at full width).
    model = _tiny(depth=depth, output_stride=output_stride, layout=layout,
                  num_blocks=(1, 1, 1, 1, 2))
    outputs = model(tf.zeros((2, 32, 64, 3)))
    self.assertCountEqual(outputs, [common.RES2, common.RES3, common.RES4,
                                    common.RES5])
    expected_strides = {common.RES2: 4, common.RES3: min(8, output_stride),
                        common.RES4: min(16, output_stride),
                        common.RES5: output_stride}
    self.assertEqual(model.endpoint_strides, expected_strides)
    for name, stride in expected_strides.items():
      self.assertEqual(outputs[name].shape,
                       (2, 32 // stride, 64 // stride,
                        model.endpoint_channels[name]))
    last = 512 if wide_resnet.parse_depth(depth) == 38 else 256
    if layout == 'deeplab2':
      # Stage outputs.
      expected = {common.RES2: 32, common.RES3: 64, common.RES4: 128}
    else:
      # Inputs of the strided last blocks; with one block per stage, the
      # outputs of the stages before (B2 after the max pool, B3, B4).
      expected = {common.RES2: 16, common.RES3: 32, common.RES4: 64}
    self.assertEqual(model.endpoint_channels, {**expected, common.RES5: last})

  def test_atrous_rates_follow_deeplab2(self):
    # WR-41 at output stride 8: B5 and B6 lose their strides; the first conv of
    # the de-strided block keeps the input rate, later convs take the output
    # rate (DeepLab2 BlockGroup).
    model = wide_resnet.WideResNet(depth=41, output_stride=8, layout='deeplab2',
                                   width_multiplier=0.125, sync_bn=False)
    stage4, stage5 = model.stages[3], model.stages[4]
    self.assertEqual([b.strides for b in stage4 + stage5], [1] * 6)
    self.assertEqual([_rates(b) for b in stage4], [[1, 2], [2, 2], [2, 2]])
    self.assertEqual([_rates(b) for b in stage5],
                     [[1, 2, 1], [1, 4, 1], [1, 4, 1]])
    self.assertEqual(model.stages[2][0].strides, 2)
    self.assertIsNone(model.pool)
    model = wide_resnet.WideResNet(depth=41, output_stride=16,
                                   multi_grid=(1, 2, 4), layout='deeplab2',
                                   width_multiplier=0.125, sync_bn=False)
    self.assertEqual([_rates(b)[1] for b in model.stages[4]], [1, 4, 8])
    self.assertEqual(model.stages[3][0].strides, 2)

  def test_naive_student_layout_strides_last_blocks(self):
    # B2, then a stride-2 max pool; B3..B5 stride on the second conv of their
    # last block (DeepLab TF1 lite_bottleneck). At output stride 8 the
    # de-strided blocks keep their input rate and the rate doubles after them
    # (slim stack_blocks_dense).
    model = wide_resnet.WideResNet(depth=41, output_stride=8,
                                   width_multiplier=0.125, sync_bn=False)
    self.assertEqual(model.pool.strides, (2, 2))
    self.assertEqual([[b.strides for b in stage] for stage in model.stages],
                     [[1, 1, 1], [1, 1, 2], [1] * 6, [1, 1, 1], [1, 1, 1]])
    last_b3 = model.stages[1][-1]
    self.assertEqual([c.conv.strides[0] for c in last_b3.branch], [1, 2])
    self.assertEqual([_rates(b) for b in model.stages[2]], [[1, 1]] * 6)
    self.assertEqual([_rates(b) for b in model.stages[3]], [[2, 2]] * 3)
    self.assertEqual([_rates(b) for b in model.stages[4]], [[1, 4, 1]] * 3)
    model = wide_resnet.WideResNet(depth=41, output_stride=16,
                                   multi_grid=(1, 2, 4), width_multiplier=0.125,
                                   sync_bn=False)
    self.assertEqual([b.strides for b in model.stages[2]], [1] * 5 + [2])
    self.assertEqual([b.strides for b in model.stages[3]], [1, 1, 1])
    self.assertEqual([_rates(b)[1] for b in model.stages[4]], [2, 4, 8])

  def test_block_layout_of_wide_resnet38(self):
    layout = wide_resnet.block_layout(38, output_stride=8, layout='deeplab2')
    self.assertEqual([len(stage) for stage in layout], [3, 3, 6, 3, 2])
    self.assertEqual([b['strides'] for b in layout[0] + layout[1]],
                     [1, 1, 1, 2, 1, 1])
    b6, b7 = layout[4]
    self.assertEqual((b6['kind'], b6['filters'], b6['rate']),
                     ('bottleneck', (512, 1024, 2048), 2))
    self.assertEqual((b7['filters'], b7['strides'], b7['rate']),
                     ((1024, 2048, 4096), 1, 4))
    self.assertEqual(layout[3][0]['filters'], (512, 1024))
    self.assertEqual([b['input_stride'] for b in layout[1]], [2, 4, 4])
    layout = wide_resnet.block_layout(38, output_stride=16)
    self.assertEqual([b['strides'] for b in layout[1]], [1, 1, 2])
    self.assertEqual([b['pool'] for b in layout[1]], [2, 1, 1])
    self.assertEqual([b['input_stride'] for b in layout[1]], [4, 4, 4])
    self.assertEqual([b['rate'] for b in layout[4]], [2, 2])
    self.assertEqual([b['tap_input'] for b in layout[2]],
                     [None] * 5 + [common.RES3])

  def test_drop_path_only_in_training(self):
    model = _tiny(drop_path_keep_prob=0.5, zero_init_residual=False)
    images = tf.random.normal((4, 32, 32, 3))
    first, second = model(images), model(images, training=False)
    for name in first:
      self.assertAllEqual(first[name], second[name])
    train_a = model(images, training=True)[common.RES5]
    train_b = model(images, training=True)[common.RES5]
    self.assertNotAllClose(train_a, train_b)
    # Without drop path, training mode (batch-statistics BN) is deterministic.
    model = _tiny(drop_path_keep_prob=1.0, zero_init_residual=False)
    self.assertAllClose(model(images, training=True)[common.RES5],
                        model(images, training=True)[common.RES5])

  def test_full_size_param_counts(self):
    # Measured with this code; DeepLab2's wide_resnet41 (SWideRNet-(1, 1, 1))
    # has 109,014,080 trainable weights (axial_resnet_instances_test.py), and
    # the paper lists WR-41 at 111M and WR-38 at 109M as ImageNet classifiers.
    # Zero kernels: counts do not depend on values, and 220M random draws are
    # most of this test's time.
    for depth, backbone_params, trainable, total, paper in (
        (41, 109_072_832, 109_014_080, 111_121_832, 111e6),
        (38, 105_150_912, 105_087_040, 109_247_912, 109e6)):
      model = imagenet_classifier.ImageNetClassifier(
          wide_resnet.WideResNet(depth=depth, sync_bn=False,
                                 kernel_initializer='zeros'))
      logits = model(tf.zeros((1, 32, 32, 3)))
      self.assertEqual(logits.shape, (1, 1000))
      self.assertEqual(model.backbone.count_params(), backbone_params)
      self.assertEqual(
          sum(int(np.prod(w.shape)) for w in model.backbone.trainable_weights),
          trainable)
      self.assertEqual(model.count_params(), total)
      self.assertLess(abs(total - paper) / paper, 0.01)
    self.assertLess(abs(109_072_832 - 109.07e6) / 109.07e6, 0.01)

  def test_gradients_reach_every_variable(self):
    model = _tiny(drop_path_keep_prob=0.8, zero_init_residual=False)
    images = tf.random.normal((2, 32, 32, 3))
    with tf.GradientTape() as tape:
      outputs = model(images, training=True)
      loss = sum(tf.reduce_mean(tf.square(v)) for v in outputs.values())
    grads = tape.gradient(loss, model.trainable_variables)
    self.assertNotEmpty(model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads):
      self.assertIsNotNone(grad, var.path)
      self.assertGreater(float(tf.reduce_sum(tf.abs(grad))), 0.0, var.path)

  def test_zero_init_residual_zeroes_last_gammas(self):
    model = _tiny()
    model(tf.zeros((1, 32, 32, 3)))
    gammas = [b.branch[-1].norm.gamma for stage in model.stages for b in stage]
    self.assertLen(gammas, 5)
    for gamma in gammas:
      self.assertAllEqual(gamma, tf.zeros_like(gamma))

  def test_config_round_trip(self):
    model = _tiny(depth='wide_resnet38', output_stride=8, multi_grid=(2,),
                  drop_path_keep_prob=0.9, zero_init_residual=False,
                  kernel_initializer=keras.initializers.VarianceScaling(2.0))
    images = tf.random.normal((1, 32, 32, 3))
    outputs = model(images)
    clone = wide_resnet.WideResNet.from_config(model.get_config())
    clone(images)
    clone.set_weights(model.get_weights())
    self.assertEqual(clone.get_config(), model.get_config())
    self.assertEqual(clone.endpoint_channels, model.endpoint_channels)
    for name, value in clone(images).items():
      self.assertAllClose(value, outputs[name])

  def test_classifier_config_round_trip(self):
    model = imagenet_classifier.ImageNetClassifier(
        _tiny(zero_init_residual=False), num_classes=7, dropout_rate=0.1)
    images = tf.random.normal((2, 32, 32, 3))
    logits = model(images)
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(model))
    clone(images)
    clone.set_weights(model.get_weights())
    self.assertIsInstance(clone.backbone, wide_resnet.WideResNet)
    self.assertAllClose(clone(images), logits)

  def test_checkpoint_round_trip(self):
    model = _tiny(zero_init_residual=False, drop_path_keep_prob=0.8)
    images = tf.random.normal((2, 32, 32, 3))
    model(images, training=True)  # Moves the BN statistics off their init.
    expected = model(images)
    path = tf.train.Checkpoint(model=model).save(
        os.path.join(self.get_temp_dir(), 'ckpt'))
    restored = _tiny(zero_init_residual=False, drop_path_keep_prob=0.8)
    restored(images)
    tf.train.Checkpoint(model=restored).restore(path).assert_consumed()
    for name, value in restored(images).items():
      self.assertAllEqual(value, expected[name])

  def test_rejects_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, 'depth'):
      wide_resnet.WideResNet(depth=50)
    with self.assertRaisesRegex(ValueError, 'output_stride'):
      wide_resnet.WideResNet(output_stride=4)
    with self.assertRaisesRegex(ValueError, 'multi_grid'):
      wide_resnet.WideResNet(multi_grid=(1, 2))
    with self.assertRaisesRegex(ValueError, 'num_blocks'):
      wide_resnet.WideResNet(num_blocks=(1, 1, 1))
    with self.assertRaisesRegex(ValueError, 'layout'):
      wide_resnet.WideResNet(layout='wu')

  def test_width_scaling(self):
    self.assertEqual(wide_resnet.scale_channels(2048, 0.125), 256)
    self.assertEqual(wide_resnet.scale_channels(100, 0.5), 48)
    self.assertEqual(wide_resnet.scale_channels(64, 0.05), 3)


if __name__ == '__main__':
  tf.test.main()
