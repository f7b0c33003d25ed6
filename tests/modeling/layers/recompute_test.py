"""Tests for gradient checkpointing (`recompute`) of the backbones."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from official_naive_student.modeling import presets
from official_naive_student.modeling.backbones import wide_resnet
from official_naive_student.modeling.layers import recompute as recompute_lib

_SHAPE = (2, 33, 65, 3)


def _images():
  return tf.random.stateless_uniform(_SHAPE, (1, 2), maxval=255.0)


def _loss_fn(outputs):
  """A fixed random projection of every output: gradients reach all heads."""
  total = 0.0
  for i, key in enumerate(sorted(outputs)):
    value = outputs[key]
    weights = tf.random.stateless_normal(value.shape, (3, i))
    total += tf.reduce_sum(value * weights)
  return total


def _step(model, images, use_function):
  """(loss, gradients) of one training-mode forward and backward pass."""

  def step(images):
    with tf.GradientTape() as tape:
      loss = _loss_fn(model(images, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)

  return (tf.function(step) if use_function else step)(images)


def _compare(testcase, model, backbone, mode, use_function):
  """Runs the same step without and with `mode`, from the same state."""
  images = _images()
  model(images, training=False)  # Builds.
  state = [v.numpy() for v in model.non_trainable_variables]
  results = []
  for recompute in (None, mode):
    for v, value in zip(model.non_trainable_variables, state):
      v.assign(value)  # Same drop-path seeds and BN statistics.
    backbone.recompute = recompute
    loss, grads = _step(model, images, use_function)
    results.append((loss.numpy(), [g.numpy() for g in grads],
                    [v.numpy() for v in model.non_trainable_variables]))
  (loss0, grads0, state0), (loss1, grads1, state1) = results
  testcase.assertAllClose(loss0, loss1, rtol=1e-5)
  testcase.assertLen(grads1, len(grads0))
  # Some gradients are float noise around an exact 0 (e.g. the beta of a BN
  # followed by a 1x1 conv and another training-mode BN): compare them at the
  # scale of the largest gradient of the model.
  scale = max(np.abs(g).max() for g in grads0)
  for variable, g0, g1 in zip(model.trainable_variables, grads0, grads1):
    testcase.assertGreater(np.abs(g0).sum() + np.abs(g1).sum(), 0.0,
                           msg=variable.path)
    testcase.assertAllClose(
        g0, g1, rtol=1e-4, atol=1e-5 * np.abs(g0).max() + 1e-6 * scale,
        msg=variable.path)
  # Moving statistics updated once (not again by the recomputation) and the
  # drop-path seeds advanced once.
  for variable, s0, s1 in zip(model.non_trainable_variables, state0, state1):
    testcase.assertAllClose(s0, s1, rtol=1e-5, atol=1e-6, msg=variable.path)
  testcase.assertTrue(any(
      not np.array_equal(a, b) for a, b, v in zip(
          state, state1, model.non_trainable_variables)
      if 'seed_generator_state' in v.path))


class RecomputeTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    keras.utils.set_random_seed(0)

  @parameterized.parameters(
      ('blocks', False), ('blocks', True), ('stages', False), ('stages', True))
  def test_wide_resnet_same_gradients(self, mode, use_function):
    # Drop path on (0.5 makes dropped branches likely) and BN in training mode:
    # the recomputation must redraw the same masks and batch statistics.
    model = presets.build_panoptic_deeplab(
        'tiny', num_classes=5, sync_bn=False,
        backbone_kwargs={'drop_path_keep_prob': 0.5,
                         'zero_init_residual': False})
    _compare(self, model, model.backbone, mode, use_function)

  @parameterized.parameters(False, True)
  def test_xception_same_gradients(self, use_function):
    model = presets.build_panoptic_deeplab('tiny_xception', num_classes=5,
                                           sync_bn=False)
    _compare(self, model, model.backbone, 'blocks', use_function)

  def test_preset_option_and_config(self):
    model = presets.build_panoptic_deeplab(
        'tiny', num_classes=5, backbone_kwargs={'recompute': 'stages'})
    self.assertEqual(model.backbone.recompute, 'stages')
    config = model.backbone.get_config()
    self.assertEqual(config['recompute'], 'stages')
    self.assertEqual(
        wide_resnet.WideResNet.from_config(config).recompute, 'stages')
    self.assertEqual(presets.build_panoptic_deeplab(
        'tiny', num_classes=5,
        backbone_kwargs={'recompute': True}).backbone.recompute, 'blocks')
    with self.assertRaisesRegex(ValueError, 'recompute'):
      presets.build_panoptic_deeplab(
          'tiny', backbone_kwargs={'recompute': 'layers'})
    with self.assertRaisesRegex(ValueError, 'recompute'):
      presets.build_panoptic_deeplab(
          'tiny_xception', backbone_kwargs={'recompute': 'stages'})

  def test_inference_unchanged(self):
    model = presets.build_panoptic_deeplab(
        'tiny', num_classes=5, sync_bn=False,
        backbone_kwargs={'recompute': True})
    images = _images()
    with_recompute = model(images, training=False)
    model.backbone.recompute = None
    without = model(images, training=False)
    for key in without:
      self.assertAllEqual(with_recompute[key], without[key])

  def test_recompute_function_gradients(self):
    # The helper alone: a layer with a variable, a nested output, an unused
    # output and a second input.
    dense = keras.layers.Dense(4)
    x = tf.random.stateless_normal((3, 5), (0, 1))
    y = tf.random.stateless_normal((3, 4), (0, 2))
    dense(x)

    def fn(x, y):
      h = dense(x)
      return {'a': tf.nn.relu(h) * y, 'b': h}

    for f in (fn, recompute_lib.recompute(fn, [dense])):
      with tf.GradientTape() as tape:
        tape.watch([x, y])
        loss = tf.reduce_sum(f(x, y)['a'] ** 2)
      grads = tape.gradient(loss, [x, y] + dense.trainable_variables)
      if f is fn:
        expected = grads
      else:
        for g, e in zip(grads, expected):
          self.assertAllClose(g, e)


if __name__ == '__main__':
  tf.test.main()
