"""Panoptic-DeepLab's dual decoder: one ASPP + fusion decoder per task.

Panoptic-DeepLab (Cheng et al., CVPR 2020, Sec. 3.1) decodes semantic and
instance features separately ("dual-ASPP, dual-decoder"). Each branch runs ASPP
on `res5`, then twice upsamples and fuses a lower-level endpoint (res3, then res2)
projected by a 1x1 convolution, with one 5x5 convolution after each
concatenation. DeepLab2's Cityscapes configs
(`configs/cityscapes/panoptic_deeplab/wide_resnet41_os16.textproto`) use
  semantic: ASPP 256, res3 -> 64, res2 -> 32, fusion 256;
  instance: ASPP 256, res3 -> 32, res2 -> 16, fusion 128.

The 5x5 fusion convolution is depthwise-separable in DeepLab2 and regular in the
networks whose size the Naive-Student paper reports (see docs/model_stats.md);
`separable` chooses.
"""

from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from official_naive_student import common
from official_naive_student.modeling.layers import aspp as aspp_lib
from official_naive_student.modeling.layers import conv_norm
from official_naive_student.modeling.layers import resize


@keras.saving.register_keras_serializable(package='naive_student')
class PanopticDeepLabDecoder(keras.layers.Layer):
  """One decoder branch: ASPP(high level) -> [upsample, concat low level, 5x5]*.

  Args:
    low_level_channels: ints, one per entry of `low_level_features`: the 1x1
      projection width of that endpoint (e.g. (64, 32) semantic, (32, 16)
      instance). Smaller widths keep the low-level cue from swamping ASPP.
    decoder_channels: int. Width of each 5x5 fusion convolution.
    aspp_channels: int. ASPP width.
    atrous_rates: three ints. ASPP rates for the backbone's output stride.
    high_level_feature: str. Endpoint fed to ASPP.
    low_level_features: strs. Endpoints fused in order, coarsest first.
    kernel_size: int. Fusion kernel size (5).
    separable: bool. Depthwise-separable fusion convolutions (DeepLab2) instead
      of regular ones (the paper's counted networks).
    aspp_dropout_rate: float. Dropout after the ASPP projection.
    aspp_pool_size: None (global image pooling) or (h, w); see `layers/aspp.py`.
    aspp_separable: bool. Depthwise-separable ASPP 3x3 convolutions.
    sync_bn: bool. Synchronize batch norm across replicas.

  Example:
    decoder = PanopticDeepLabDecoder(low_level_channels=(64, 32),
                                     decoder_channels=256)
    y = decoder(backbone(images))  # [B, ceil(H / 4), ceil(W / 4), 256]
  """

  def __init__(self,
               low_level_channels: Sequence[int] = (64, 32),
               decoder_channels: int = 256,
               aspp_channels: int = 256,
               atrous_rates: Sequence[int] = aspp_lib.ATROUS_RATES_OS16,
               high_level_feature: str = common.RES5,
               low_level_features: Sequence[str] = (common.RES3, common.RES2),
               kernel_size: int = 5,
               separable: bool = False,
               aspp_dropout_rate: float = 0.1,
               aspp_pool_size: Optional[Sequence[int]] = None,
               aspp_separable: bool = False,
               sync_bn: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    if len(low_level_channels) != len(low_level_features):
      raise ValueError(
          f'{len(low_level_features)} low-level features {low_level_features} '
          f'but {len(low_level_channels)} projection widths '
          f'{low_level_channels}.')
    self._config = dict(
        low_level_channels=tuple(low_level_channels),
        decoder_channels=decoder_channels, aspp_channels=aspp_channels,
        atrous_rates=tuple(atrous_rates),
        high_level_feature=high_level_feature,
        low_level_features=tuple(low_level_features),
        kernel_size=kernel_size, separable=separable,
        aspp_dropout_rate=aspp_dropout_rate,
        aspp_pool_size=None if aspp_pool_size is None else tuple(aspp_pool_size),
        aspp_separable=aspp_separable, sync_bn=sync_bn)

    # === Layers ===
    self.aspp = aspp_lib.ASPP(
        output_channels=aspp_channels, atrous_rates=atrous_rates,
        dropout_rate=aspp_dropout_rate, pool_size=aspp_pool_size,
        separable=aspp_separable, sync_bn=sync_bn, name='aspp')
    # Named attributes (`res3_projection`, `res3_fusion`, ...), not lists:
    # tf.train.Checkpoint does not track layers held in Python lists of Keras 3
    # layers.
    for feature, channels in zip(low_level_features, low_level_channels):
      setattr(self, f'{feature}_projection', conv_norm.ConvNormAct(
          filters=channels, kernel_size=1, sync_bn=sync_bn,
          name=f'{feature}_projection'))
      setattr(self, f'{feature}_fusion', conv_norm.ConvNormAct(
          filters=decoder_channels, kernel_size=kernel_size,
          separable=separable, sync_bn=sync_bn, name=f'{feature}_fusion'))

  def call(self, features: Dict[str, tf.Tensor], training=None) -> tf.Tensor:
    """Decodes a backbone's endpoint dict to [B, h_last, w_last, decoder_channels].

    Each fusion upsamples (aligned corners) to the low-level map's size, so
    odd input sizes, where ceil(H / 8) != 2 * ceil(H / 16), still line up.
    """
    x = self.aspp(features[self._config['high_level_feature']],
                  training=training)
    for feature in self._config['low_level_features']:
      projection = getattr(self, f'{feature}_projection')
      fusion = getattr(self, f'{feature}_fusion')
      low = projection(features[feature], training=training)
      x = resize.resize_align_corners(x, resize.spatial_size(low))
      x = fusion(tf.concat([x, low], axis=-1), training=training)
    return x

  def get_config(self):
    return {**super().get_config(), **self._config}
