"""Panoptic-DeepLab's prediction head, used three times (semantic, center, offset).

Each head is one 5x5 convolution + BN + ReLU followed by a biased 1x1
convolution to the output channels (Panoptic-DeepLab Sec. 3.1; DeepLab2's
`PanopticDeepLabSingleHead`). The Cityscapes widths are
  semantic: 5x5 256 -> 1x1 num_classes (on the 256-channel semantic decoder),
  center:   5x5 32  -> 1x1 1            (on the 128-channel instance decoder),
  offset:   5x5 32  -> 1x1 2, (y, x) in feature-map pixels.
"""

import keras
import tensorflow as tf

from official_naive_student.modeling.layers import conv_norm

# DeepLab2 initializes the last 1x1 with a small normal so that initial logits,
# heatmaps and offsets are near zero.
FINAL_CONV_STDDEV = 0.01


@keras.saving.register_keras_serializable(package='naive_student')
class PredictionHead(keras.layers.Layer):
  """5x5 conv (regular or depthwise-separable) + BN + ReLU -> 1x1 conv with bias.

  The two parts are separate attributes (`conv_block`, `final_conv`) so a
  checkpoint can restore the first without the second when the class count
  changes (Cityscapes -> CamVid fine-tuning).

  Args:
    intermediate_channels: int. Width of the 5x5 convolution.
    output_channels: int. Number of predicted channels.
    kernel_size: int. Spatial size of the first convolution (5).
    separable: bool. Depthwise-separable first convolution (DeepLab2) instead of
      a regular one (the paper's counted networks).
    sync_bn: bool. Synchronize batch norm across replicas.

  Example:
    head = PredictionHead(intermediate_channels=32, output_channels=2)
    offsets = head(instance_features)  # [B, h, w, 2]
  """

  def __init__(self,
               intermediate_channels: int = 256,
               output_channels: int = 19,
               kernel_size: int = 5,
               separable: bool = False,
               sync_bn: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    self._config = dict(
        intermediate_channels=intermediate_channels,
        output_channels=output_channels, kernel_size=kernel_size,
        separable=separable, sync_bn=sync_bn)
    # === Layers ===
    self.conv_block = conv_norm.ConvNormAct(
        filters=intermediate_channels, kernel_size=kernel_size,
        separable=separable, sync_bn=sync_bn, name='conv_block')
    self.final_conv = keras.layers.Conv2D(
        output_channels, 1, name='final_conv',
        kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=FINAL_CONV_STDDEV))

  def call(self, x: tf.Tensor, training=None) -> tf.Tensor:
    return self.final_conv(self.conv_block(x, training=training))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:3]) + (self._config['output_channels'],)

  def get_config(self):
    return {**super().get_config(), **self._config}
