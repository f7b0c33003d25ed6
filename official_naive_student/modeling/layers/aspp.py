"""Atrous Spatial Pyramid Pooling (DeepLabv3), the context module of each decoder.

Five parallel branches on the backbone's last feature map -- a 1x1 convolution,
three 3x3 atrous convolutions and image-level pooling -- are concatenated and
projected back to `output_channels`, then dropped out at 0.1, as in DeepLab2's
`model/decoder/aspp.py`.

Image pooling. DeepLab2 replaces global pooling by a fixed window equal to the
*training crop* divided by the output stride ("found to be experimentally
better") and rescales that window for every test scale. With the full-image
1025 x 2049 crops of the Cityscapes configs the window covers the whole map, so
this is global pooling in training and at scale 1. We pool globally over the
actual map by default: it is the same operator on full-image crops and stays
correct for any input size, which multi-scale test-time augmentation and
pseudo-labelling at several scales need. A fixed `pool_size` reproduces DeepLab2's
tiled pooling where wanted; a window larger than the map is clipped to the map.
"""

from typing import Optional, Sequence, Tuple

import keras
import tensorflow as tf

from official_naive_student.modeling.layers import conv_norm
from official_naive_student.modeling.layers import replica_random
from official_naive_student.modeling.layers import resize

# DeepLabv3's atrous rates at output stride 16; they scale with 16 / OS.
ATROUS_RATES_OS16 = (6, 12, 18)


def scale_atrous_rates(rates: Sequence[int], output_stride: int) -> Tuple[int, ...]:
  """Rates for `output_stride`, given rates chosen for output stride 16.

  The same field of view in input pixels needs twice the rate at OS8 and half
  at OS32 (DeepLabv3, Sec. 3.3); rates never drop below 1.
  """
  return tuple(max(1, int(round(r * 16 / output_stride))) for r in rates)


@keras.saving.register_keras_serializable(package='naive_student')
class ASPP(keras.layers.Layer):
  """ASPP: [1x1, 3x3 rate r1, r2, r3, image pooling] -> concat -> 1x1 -> dropout.

  Args:
    output_channels: int. Channels of every branch and of the projection.
    atrous_rates: three ints. Rates of the 3x3 branches for this output stride.
    dropout_rate: float. Dropout after the projection (0.1 in DeepLab2).
    pool_size: None for global average pooling over the actual feature map, or
      (h, w) for DeepLab2's tiled pooling with a fixed window (feature pixels).
    separable: bool. Depthwise-separable 3x3 atrous convolutions, as DeepLabv3+
      uses with Xception backbones (`aspp_with_separable_conv`).
    sync_bn: bool. Synchronize batch norm across replicas.

  Example:
    aspp = ASPP(output_channels=256, atrous_rates=(6, 12, 18))
    y = aspp(features['res5'])  # [B, h, w, 256]
  """

  def __init__(self,
               output_channels: int = 256,
               atrous_rates: Sequence[int] = ATROUS_RATES_OS16,
               dropout_rate: float = 0.1,
               pool_size: Optional[Sequence[int]] = None,
               separable: bool = False,
               sync_bn: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    if len(atrous_rates) != 3:
      raise ValueError(f'ASPP needs 3 atrous rates, got {list(atrous_rates)}.')
    if pool_size is not None and (len(pool_size) != 2 or None in pool_size):
      raise ValueError(f'pool_size must be None or (h, w), got {pool_size}.')
    self._config = dict(
        output_channels=output_channels,
        atrous_rates=tuple(int(r) for r in atrous_rates),
        dropout_rate=dropout_rate,
        pool_size=None if pool_size is None else tuple(pool_size),
        separable=separable, sync_bn=sync_bn)

    def conv(kernel_size, rate, name):
      return conv_norm.ConvNormAct(
          filters=output_channels, kernel_size=kernel_size,
          dilation_rate=rate, separable=separable and kernel_size > 1,
          sync_bn=sync_bn, name=name)

    # === Layers ===
    self.conv_1x1 = conv(1, 1, 'conv_1x1')
    # Named attributes, not a list: tf.train.Checkpoint does not track layers
    # held in Python lists of Keras 3 layers.
    self.atrous_conv1, self.atrous_conv2, self.atrous_conv3 = (
        conv(3, rate, f'atrous_conv{i + 1}')
        for i, rate in enumerate(self._config['atrous_rates']))
    self.pool_conv = conv(1, 1, 'pool_conv')
    self.projection = conv(1, 1, 'projection')
    self.dropout = replica_random.Dropout(dropout_rate, name='dropout')

  def image_pooling(self, x, training=None):
    """Pooled context, projected and spread back over the [h, w] grid."""
    pool_size = self._config['pool_size']
    if pool_size is None:
      pooled = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
      pooled = self.pool_conv(pooled, training=training)
      return tf.broadcast_to(
          pooled, tf.concat([tf.shape(x)[:3], tf.shape(pooled)[3:]], 0))
    window = [min(p, s) if s is not None else p
              for p, s in zip(pool_size, x.shape[1:3])]
    pooled = tf.nn.avg_pool2d(x, window, strides=1, padding='VALID')
    pooled = self.pool_conv(pooled, training=training)
    return resize.resize_align_corners(pooled, resize.spatial_size(x))

  def call(self, x, training=None):
    branches = [self.conv_1x1(x, training=training)]
    branches += [conv(x, training=training) for conv in
                 (self.atrous_conv1, self.atrous_conv2, self.atrous_conv3)]
    branches.append(self.image_pooling(x, training=training))
    y = self.projection(tf.concat(branches, axis=-1), training=training)
    return self.dropout(y, training=training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:3]) + (self._config['output_channels'],)

  def get_config(self):
    return {**super().get_config(), **self._config}
