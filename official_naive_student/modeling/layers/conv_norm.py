"""Convolution + batch norm + activation: the one place the project builds either.

Every backbone, decoder and head builds its convolutions here, so batch-norm
settings (momentum, epsilon, synchronized across replicas) are decided once.
"""

from typing import Optional

import keras

# Batch norm settings of DeepLab2/Panoptic-DeepLab (momentum 0.99, epsilon 1e-3).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def build_norm(synchronized: bool = True,
               momentum: float = BN_MOMENTUM,
               epsilon: float = BN_EPSILON,
               name: Optional[str] = None) -> keras.layers.Layer:
  """Batch norm whose statistics are all-reduced across replicas when synchronized.

  Synchronized BN is what the paper trains with (batch 32 over many replicas); on
  one replica it equals plain BN.
  """
  return keras.layers.BatchNormalization(
      momentum=momentum, epsilon=epsilon, synchronized=synchronized, name=name)


@keras.saving.register_keras_serializable(package='naive_student')
class ConvNormAct(keras.layers.Layer):
  """Conv2D (regular or depthwise-separable) -> BN -> activation.

  A separable convolution follows DeepLab's form: depthwise conv -> BN -> act ->
  pointwise 1x1 conv -> BN -> act (Xception, Panoptic-DeepLab decoders/heads).

  Args:
    filters: int. Output channels.
    kernel_size: int. Spatial kernel size.
    strides: int. Stride of the (depthwise) convolution.
    dilation_rate: int. Atrous rate of the (depthwise) convolution.
    separable: bool. Depthwise-separable instead of a regular convolution.
    use_norm: bool. Apply batch norm (False gives a biased convolution).
    activation: str or None. Activation after each norm ('relu' by default).
    activation_in_separable: bool. Apply the activation between the depthwise and
      pointwise convolutions of a separable conv (DeepLab's Xception does).
    sync_bn: bool. Synchronize batch norm across replicas.
    kernel_initializer: Keras initializer name or object.
  """

  def __init__(self,
               filters: int,
               kernel_size: int = 3,
               strides: int = 1,
               dilation_rate: int = 1,
               separable: bool = False,
               use_norm: bool = True,
               activation: Optional[str] = 'relu',
               activation_in_separable: bool = True,
               sync_bn: bool = True,
               kernel_initializer='he_normal',
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(
        filters=filters, kernel_size=kernel_size, strides=strides,
        dilation_rate=dilation_rate, separable=separable, use_norm=use_norm,
        activation=activation, activation_in_separable=activation_in_separable,
        sync_bn=sync_bn,
        kernel_initializer=keras.initializers.serialize(
            keras.initializers.get(kernel_initializer)))
    init = keras.initializers.get(kernel_initializer)
    self.depthwise = None
    self.depthwise_norm = None
    self._subsample = 1
    if separable:
      self.depthwise = keras.layers.DepthwiseConv2D(
          kernel_size, strides=strides, dilation_rate=dilation_rate,
          padding='same', use_bias=False, depthwise_initializer=init,
          name='depthwise')
      self.depthwise_norm = build_norm(sync_bn, name='depthwise_bn')
      self.conv = keras.layers.Conv2D(
          filters, 1, padding='same', use_bias=not use_norm,
          kernel_initializer=init, name='pointwise')
    else:
      # A strided 1x1 convolution reads every s-th pixel: subsample, then run it
      # at stride 1. Same result, parameters and M-Adds, and it avoids a oneDNN
      # bug in TF 2.21 on CPU (the weight gradient of a strided 1x1 conv with
      # fewer than 16 input channels crashes or is wrong; oneDNN issue 6035).
      self._subsample = strides if kernel_size == 1 and strides > 1 else 1
      self.conv = keras.layers.Conv2D(
          filters, kernel_size, strides=strides // self._subsample,
          dilation_rate=dilation_rate, padding='same', use_bias=not use_norm,
          kernel_initializer=init, name='conv')
    self.norm = build_norm(sync_bn, name='bn') if use_norm else None
    self.act = keras.layers.Activation(activation) if activation else None

  def call(self, x, training=None):
    if self._subsample > 1:
      x = x[:, ::self._subsample, ::self._subsample, :]
    if self.depthwise is not None:
      x = self.depthwise(x)
      x = self.depthwise_norm(x, training=training)
      if self.act is not None and self._config['activation_in_separable']:
        x = self.act(x)
    x = self.conv(x)
    if self.norm is not None:
      x = self.norm(x, training=training)
    if self.act is not None:
      x = self.act(x)
    return x

  def compute_output_shape(self, input_shape):
    stride = self._config['strides']
    h, w = input_shape[1], input_shape[2]
    h = None if h is None else -(-h // stride)
    w = None if w is None else -(-w // stride)
    return (input_shape[0], h, w, self._config['filters'])

  def get_config(self):
    return {**super().get_config(), **self._config}
