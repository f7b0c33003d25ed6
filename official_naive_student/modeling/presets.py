"""Named Panoptic-DeepLab configurations, their builder, and the paper's sizes.

A preset is a set of `build_panoptic_deeplab` keyword arguments over
`DEFAULTS`, which are the Cityscapes settings of DeepLab2
(`configs/cityscapes/panoptic_deeplab/wide_resnet41_os16.textproto`) with the
paper's regular 5x5 convolutions in decoders and heads and the paper's
Wide-ResNet layout (`WideResNet` default `layout='naive_student'`; DeepLab2's is
`backbone_kwargs={'layout': 'deeplab2'}`). `tiny` models run through
the same classes, only narrower and shallower.

`PAPER_FIGURES` holds the published parameter and multiply-add counts that
`tools/model_stats.py` checks the built networks against; see
docs/model_stats.md for which configuration reproduces them and why.
"""

import copy
from typing import Any, Dict

import gin

from official_naive_student.modeling import panoptic_deeplab
from official_naive_student.modeling.backbones import wide_resnet
from official_naive_student.modeling.backbones import xception
from official_naive_student.modeling.decoders import panoptic_deeplab as decoders
from official_naive_student.modeling.heads import panoptic_heads
from official_naive_student.modeling.layers import aspp

STANDARD_CONV = 'standard_conv'
SEPARABLE_CONV = 'depthwise_separable_conv'
_CONV_TYPES = (STANDARD_CONV, SEPARABLE_CONV)

WIDE_RESNET = 'wide_resnet'
XCEPTION = 'xception'
_BACKBONES = {WIDE_RESNET: wide_resnet.WideResNet, XCEPTION: xception.Xception}

DEFAULTS: Dict[str, Any] = dict(
    backbone=WIDE_RESNET,
    # Extra WideResNet / Xception kwargs (depth, width_multiplier, num_blocks,
    # num_middle_blocks, multi_grid, drop_path_keep_prob, ...).
    backbone_kwargs={},
    output_stride=16,
    # 'standard_conv' (the paper's counted networks) or
    # 'depthwise_separable_conv' (DeepLab2) for the 5x5 decoder fusion convs ...
    decoder_conv_type=STANDARD_CONV,
    # ... and for the 5x5 conv of each prediction head.
    head_conv_type=STANDARD_CONV,
    aspp_channels=256,
    # 'standard_conv' or 'depthwise_separable_conv' for the ASPP 3x3 convs.
    aspp_conv_type=STANDARD_CONV,
    # ASPP rates at output stride 16; scaled by 16 / output_stride.
    atrous_rates=aspp.ATROUS_RATES_OS16,
    aspp_pool_size=None,
    semantic_low_level_channels=(64, 32),
    semantic_decoder_channels=256,
    semantic_head_channels=256,
    instance_aspp_channels=256,
    instance_low_level_channels=(32, 16),
    instance_decoder_channels=128,
    instance_head_channels=32,
    sync_bn=True,
)

_TINY_DECODER = dict(
    aspp_channels=16, instance_aspp_channels=16,
    semantic_low_level_channels=(8, 8), semantic_decoder_channels=16,
    semantic_head_channels=16, instance_low_level_channels=(8, 4),
    instance_decoder_channels=8, instance_head_channels=8)

PRESETS: Dict[str, Dict[str, Any]] = {
    # The Naive-Student student (Sec. 4): WR-41, OS16. Drop path 0.8 as in
    # DeepLab2's wide_resnet41_os16 config.
    'panoptic_deeplab_wr41': dict(
        backbone=WIDE_RESNET,
        backbone_kwargs=dict(depth='wide_resnet41', drop_path_keep_prob=0.8)),
    'panoptic_deeplab_wr38': dict(
        backbone=WIDE_RESNET,
        backbone_kwargs=dict(depth='wide_resnet38', drop_path_keep_prob=0.8)),
    # The Panoptic-DeepLab Cityscapes teacher: separable convolutions in ASPP,
    # decoders and heads (DeepLabv3+ with Xception) give the published size.
    'panoptic_deeplab_x71': dict(
        backbone=XCEPTION, backbone_kwargs=dict(depth='xception71'),
        aspp_conv_type=SEPARABLE_CONV, decoder_conv_type=SEPARABLE_CONV,
        head_conv_type=SEPARABLE_CONV),
    # DeepLab2's Cityscapes WR-41 (`wide_resnet41_os16.textproto`): its layout
    # and separable 5x5 decoder and head convolutions, the network of its
    # published checkpoints (`tools/import_checkpoint.py`); 140,550,214
    # weights, as DeepLab2 counts. DeepLab2 lowers drop path linearly over the
    # stages ('linear' schedule); ours keeps 0.8 in every stage beyond stride 4.
    'panoptic_deeplab_wr41_deeplab2': dict(
        backbone=WIDE_RESNET,
        backbone_kwargs=dict(depth='wide_resnet41', drop_path_keep_prob=0.8,
                             layout=wide_resnet.DEEPLAB2),
        decoder_conv_type=SEPARABLE_CONV, head_conv_type=SEPARABLE_CONV),
    # Tests and demos: one block per stage (one middle-flow unit), 16-channel
    # decoders; WR at 1/8 width (at 1/16 the oneDNN CPU kernel for the filter
    # gradient of its 8 -> 16 stride-2 1x1 shortcut corrupts the heap at even
    # input sizes in TF 2.21), Xception at 1/16.
    'tiny': dict(
        backbone=WIDE_RESNET,
        backbone_kwargs=dict(depth='wide_resnet41', width_multiplier=1 / 8,
                             num_blocks=(1, 1, 1, 1, 1)),
        **_TINY_DECODER),
    'tiny_xception': dict(
        backbone=XCEPTION,
        backbone_kwargs=dict(depth='xception71', width_multiplier=1 / 16,
                             num_middle_blocks=1),
        **_TINY_DECODER),
}

# Published sizes: Naive-Student (Chen et al., ECCV 2020) Tables for WR-41/38,
# Panoptic-DeepLab (Cheng et al., CVPR 2020) for X-71; M-Adds at 1025 x 2049 with
# 19 classes at OS16 (ImageNet classifiers: 224 x 224, 1000 classes).
PAPER_FIGURES: Dict[str, Dict[str, Any]] = {
    'panoptic_deeplab_wr41': dict(params=147.27e6, madds=3238.81e9,
                                  madds_multi_grid=3246.40e9,
                                  input=(1025, 2049)),
    'panoptic_deeplab_wr38': dict(params=173.75e6, madds=3486.32e9,
                                  madds_multi_grid=3493.80e9,
                                  input=(1025, 2049)),
    'panoptic_deeplab_x71': dict(params=46.72e6, madds=547.49e9,
                                 input=(1025, 2049)),
    'imagenet_wr41': dict(params=111e6, madds=49.3e9, input=(224, 224)),
    'imagenet_wr38': dict(params=109e6, madds=46e9, input=(224, 224)),
}

def preset_options(preset: str, **overrides) -> Dict[str, Any]:
  """DEFAULTS <- PRESETS[preset] <- overrides, validated.

  `backbone_kwargs` overrides are merged into the preset's, so
  `backbone_kwargs={'multi_grid': (1, 2, 4)}` keeps the preset's depth.
  """
  if preset not in PRESETS:
    raise ValueError(f'Unknown preset {preset!r}; known: {sorted(PRESETS)}.')
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise ValueError(f'Unknown option(s) {sorted(unknown)} for preset '
                     f'{preset!r}; known: {sorted(DEFAULTS)}.')
  options = copy.deepcopy(DEFAULTS)
  for layer in (PRESETS[preset], overrides):
    for key, value in layer.items():
      if key == 'backbone_kwargs':
        options[key] = {**options[key], **value}
      else:
        options[key] = value
  for key in ('decoder_conv_type', 'head_conv_type', 'aspp_conv_type'):
    if options[key] not in _CONV_TYPES:
      raise ValueError(f'{key} must be one of {_CONV_TYPES}, '
                       f'got {options[key]!r}.')
  if options['backbone'] not in _BACKBONES:
    raise ValueError(f'backbone must be one of {sorted(_BACKBONES)}, '
                     f'got {options["backbone"]!r}.')
  return options


def build_backbone(preset: str, **overrides):
  """The preset's backbone alone (for ImageNet classifiers and tools)."""
  options = preset_options(preset, **overrides)
  return _BACKBONES[options['backbone']](
      output_stride=options['output_stride'], sync_bn=options['sync_bn'],
      **options['backbone_kwargs'])


@gin.register
def build_panoptic_deeplab(preset: str = 'panoptic_deeplab_wr41',
                           num_classes: int = 19,
                           **overrides) -> panoptic_deeplab.PanopticDeepLab:
  """Builds a PanopticDeepLab from a preset name and `DEFAULTS` overrides.

  Args:
    preset: key of PRESETS.
    num_classes: semantic classes (19 for Cityscapes).
    **overrides: any key of DEFAULTS, e.g. output_stride=8,
      decoder_conv_type='depthwise_separable_conv',
      backbone_kwargs={'multi_grid': (1, 2, 4)}.

  Returns:
    An unbuilt PanopticDeepLab; variables are created on its first call.
  """
  o = preset_options(preset, **overrides)
  rates = aspp.scale_atrous_rates(o['atrous_rates'], o['output_stride'])
  decoder_separable = o['decoder_conv_type'] == SEPARABLE_CONV
  head_separable = o['head_conv_type'] == SEPARABLE_CONV
  sync_bn = o['sync_bn']

  def decoder(name, aspp_channels, low_level_channels, channels):
    return decoders.PanopticDeepLabDecoder(
        low_level_channels=low_level_channels, decoder_channels=channels,
        aspp_channels=aspp_channels, atrous_rates=rates,
        separable=decoder_separable, aspp_pool_size=o['aspp_pool_size'],
        aspp_separable=o['aspp_conv_type'] == SEPARABLE_CONV,
        sync_bn=sync_bn, name=name)

  def head(name, channels, outputs):
    return panoptic_heads.PredictionHead(
        intermediate_channels=channels, output_channels=outputs,
        separable=head_separable, sync_bn=sync_bn, name=name)

  return panoptic_deeplab.PanopticDeepLab(
      backbone=build_backbone(preset, **overrides),
      semantic_decoder=decoder(
          'semantic_decoder', o['aspp_channels'],
          o['semantic_low_level_channels'], o['semantic_decoder_channels']),
      instance_decoder=decoder(
          'instance_decoder', o['instance_aspp_channels'],
          o['instance_low_level_channels'], o['instance_decoder_channels']),
      semantic_head=head('semantic_head', o['semantic_head_channels'],
                         num_classes),
      center_head=head('center_head', o['instance_head_channels'], 1),
      offset_head=head('offset_head', o['instance_head_channels'], 2),
      name=preset)
