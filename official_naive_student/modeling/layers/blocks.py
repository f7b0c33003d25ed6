"""Residual blocks and drop path shared by the convolutional backbones.

The blocks follow DeepLab2's `model/layers/axial_blocks.py` (AxialBlock without
attention): striding and atrous rates sit in the first spatial (3x3)
convolution (BasicBlock can move its stride to the second, as DeepLab's TF1
code does), the last batch norm of a branch starts at gamma = 0 so every block
begins as an identity, and a 1x1 projection shortcut appears only when the
channel count changes. DeepLab2 applies the ReLU at the start of the next block;
applying it to the sum here (ResNet v1 form) computes the same function and lets
every block output be used directly as an endpoint.
"""

from typing import Optional, Sequence

import keras
import tensorflow as tf

from official_naive_student.modeling.layers import conv_norm
from official_naive_student.modeling.layers import replica_random


@keras.saving.register_keras_serializable(package='naive_student')
class DropPath(keras.layers.Layer):
  """Stochastic depth: drops a whole residual branch per sample while training.

  Kept samples are scaled by 1 / keep_prob so the expectation matches inference,
  where the layer is the identity (Huang et al., "Deep Networks with Stochastic
  Depth", ECCV 2016; DeepLab2 `model/layers/drop_path.py`). Each replica of a
  distributed step draws its own masks (`replica_random`).

  Args:
    keep_prob: float in (0, 1]. Probability that a sample keeps the branch.
    seed: int or None. Seed of the layer's random generator.
  """

  def __init__(self, keep_prob: float = 1.0, seed: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    if not 0.0 < keep_prob <= 1.0:
      raise ValueError(f'DropPath keep_prob must be in (0, 1], got {keep_prob}.')
    self.keep_prob = keep_prob
    self.seed = seed
    self.seed_generator = (keras.random.SeedGenerator(seed)
                           if keep_prob < 1.0 else None)

  def call(self, x, training=None):
    if not training or self.keep_prob >= 1.0:
      return x
    shape = tf.stack([tf.shape(x)[0]] + [1] * (len(x.shape) - 1))
    noise = replica_random.uniform(shape, self.seed_generator, x.dtype)
    mask = keras.ops.floor(self.keep_prob + noise)
    return x * (mask / self.keep_prob)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'keep_prob': self.keep_prob,
            'seed': self.seed}


class _ResidualBlock(keras.layers.Layer):
  """Shared shortcut, drop path and output ReLU of the residual blocks.

  Subclasses set `self.conv1`, `self.conv2` (, `self.conv3`): ConvNormAct
  layers, the last one without activation and with a zero-initialized gamma.
  They are attributes, not a list, because TensorFlow checkpoints only follow
  attributes of Keras 3 layers.
  """

  def __init__(self,
               filters: Sequence[int],
               strides: int = 1,
               dilation_rate: int = 1,
               drop_path_keep_prob: float = 1.0,
               zero_init_residual: bool = True,
               sync_bn: bool = True,
               kernel_initializer='he_normal',
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(
        filters=tuple(int(f) for f in filters), strides=strides,
        dilation_rate=dilation_rate, drop_path_keep_prob=drop_path_keep_prob,
        zero_init_residual=zero_init_residual, sync_bn=sync_bn,
        kernel_initializer=keras.initializers.serialize(
            keras.initializers.get(kernel_initializer)))
    self.out_channels = int(filters[-1])
    self.strides = strides
    self.shortcut = None
    self.drop_path = (DropPath(drop_path_keep_prob, name='drop_path')
                      if drop_path_keep_prob < 1.0 else None)
    self._num_convs = len(filters)

  @property
  def branch(self):
    """The residual branch's ConvNormAct layers, in order."""
    return [getattr(self, f'conv{i + 1}') for i in range(self._num_convs)]

  def _conv(self, filters, kernel_size, **kwargs):
    """A ConvNormAct with the block's batch-norm and initializer settings."""
    return conv_norm.ConvNormAct(
        filters, kernel_size, sync_bn=self._config['sync_bn'],
        kernel_initializer=self._config['kernel_initializer'], **kwargs)

  def _last_conv(self, filters, kernel_size, dilation_rate=1, strides=1):
    """The branch's final conv + BN; gamma = 0 makes the block start as identity."""
    layer = self._conv(filters, kernel_size, strides=strides,
                       dilation_rate=dilation_rate, activation=None,
                       name=f'conv{self._num_convs}')
    if self._config['zero_init_residual']:
      # Set before build, so the variable is created with zeros (DeepLab2
      # passes bn_gamma_initializer='zeros' to the same convolution).
      layer.norm.gamma_initializer = keras.initializers.Zeros()
    return layer

  def build(self, input_shape):
    if input_shape[-1] != self.out_channels:
      self.shortcut = self._conv(self.out_channels, 1, strides=self.strides,
                                 activation=None, name='shortcut')
    super().build(input_shape)

  def call(self, x, training=None):
    if self.shortcut is not None:
      shortcut = self.shortcut(x, training=training)
    elif self.strides > 1:
      shortcut = x[:, ::self.strides, ::self.strides, :]
    else:
      shortcut = x
    y = x
    for layer in self.branch:
      y = layer(y, training=training)
    if self.drop_path is not None:
      y = self.drop_path(y, training=training)
    return keras.ops.relu(y + shortcut)

  def compute_output_shape(self, input_shape):
    h, w = input_shape[1], input_shape[2]
    s = self.strides
    h = None if h is None else -(-h // s)
    w = None if w is None else -(-w // s)
    return (input_shape[0], h, w, self.out_channels)

  def get_config(self):
    return {**super().get_config(), **self._config}


@keras.saving.register_keras_serializable(package='naive_student')
class BasicBlock(_ResidualBlock):
  """Two 3x3 convolutions: the block of Wide-ResNet's B2-B5 (Wu et al. 2019).

  Args:
    filters: (int, int). Output channels of the two 3x3 convolutions.
    strides: int. Stride of the block: of its first convolution (second with
      `stride_in_second_conv`) and of the shortcut.
    dilation_rate: int. Atrous rate of the first convolution.
    second_dilation_rate: int or None. Atrous rate of the second convolution;
      None uses `dilation_rate`. When a stride is replaced by atrous
      convolution, the first conv keeps the input rate and the second takes the
      output rate (DeepLab2 `basic_block_second_conv_atrous_rate`), so features
      stay aligned across output strides.
    stride_in_second_conv: bool. Put the stride on the second 3x3 conv instead
      of the first, as DeepLab's TF1 `resnet_v1_beta.lite_bottleneck` does. The
      first conv then runs at the input resolution, which is what the
      Naive-Student multiply-add counts assume (docs/model_stats.md).
    drop_path_keep_prob: float. Survival probability of the residual branch.
    zero_init_residual: bool. Start the last BN's gamma at zero.
    sync_bn: bool. Synchronize batch norm across replicas.
    kernel_initializer: Keras initializer of every convolution kernel.
  """

  def __init__(self, filters: Sequence[int] = (64, 64), strides: int = 1,
               dilation_rate: int = 1,
               second_dilation_rate: Optional[int] = None,
               stride_in_second_conv: bool = False, **kwargs):
    if len(filters) != 2:
      raise ValueError(f'BasicBlock needs 2 filters, got {filters}.')
    super().__init__(filters=filters, strides=strides,
                     dilation_rate=dilation_rate, **kwargs)
    self._config['second_dilation_rate'] = second_dilation_rate
    self._config['stride_in_second_conv'] = stride_in_second_conv
    if second_dilation_rate is None:
      second_dilation_rate = dilation_rate
    self.conv1 = self._conv(filters[0], 3,
                            strides=1 if stride_in_second_conv else strides,
                            dilation_rate=dilation_rate, name='conv1')
    self.conv2 = self._last_conv(
        filters[1], 3, second_dilation_rate,
        strides=strides if stride_in_second_conv else 1)


@keras.saving.register_keras_serializable(package='naive_student')
class BottleneckBlock(_ResidualBlock):
  """1x1 -> 3x3 -> 1x1 convolutions: the block of Wide-ResNet's B6 and B7.

  Args:
    filters: (int, int, int). Output channels of the 1x1, 3x3, 1x1 convs.
    strides: int. Stride of the 3x3 convolution (and the projection).
    dilation_rate: int. Atrous rate of the 3x3 convolution.
    drop_path_keep_prob: float. Survival probability of the residual branch.
    zero_init_residual: bool. Start the last BN's gamma at zero.
    sync_bn: bool. Synchronize batch norm across replicas.
    kernel_initializer: Keras initializer of every convolution kernel.
  """

  def __init__(self, filters: Sequence[int] = (64, 64, 256), strides: int = 1,
               dilation_rate: int = 1, **kwargs):
    if len(filters) != 3:
      raise ValueError(f'BottleneckBlock needs 3 filters, got {filters}.')
    super().__init__(filters=filters, strides=strides,
                     dilation_rate=dilation_rate, **kwargs)
    self.conv1 = self._conv(filters[0], 1, name='conv1')
    self.conv2 = self._conv(filters[1], 3, strides=strides,
                            dilation_rate=dilation_rate, name='conv2')
    self.conv3 = self._last_conv(filters[2], 1)
