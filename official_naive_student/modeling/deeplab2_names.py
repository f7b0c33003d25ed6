"""Where each variable of a DeepLab2 Panoptic-DeepLab checkpoint lives in ours.

DeepLab2 saves `tf.train.Checkpoint(global_step, optimizer, encoder,
semantic_decoder, ...)` (its `DeepLab.checkpoint_items`); inside each item the
object path follows its private attribute names, e.g.
`encoder/_stage3/_block2/_conv1_bn_act/_batch_norm/gamma`. `our_attribute`
rewrites such a path into an attribute chain of `PanopticDeepLab`
(`backbone.stage3_block2.conv1.norm.gamma`): one table for the layers, one for
the variables inside a layer. `infer_options` reads the widths, depths and
convolution types from the checkpoint's shapes, so the network we build for it
is the one that was saved, and any layer the tables miss is an error, not a
silently fresh weight.
"""

import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from official_naive_student.modeling.backbones import wide_resnet

ENCODER = 'encoder'
# DeepLab2 checkpoint items (`common.CKPT_*` there) -> our model's attribute.
ITEMS = {
    ENCODER: 'backbone',
    'semantic_decoder': 'semantic_decoder',
    'instance_decoder': 'instance_decoder',
    'semantic_head_without_last_layer': 'semantic_head.conv_block',
    'semantic_last_layer': 'semantic_head.final_conv',
    'instance_center_head_without_last_layer': 'center_head.conv_block',
    'instance_center_head_last_layer': 'center_head.final_conv',
    'instance_regression_head_without_last_layer': 'offset_head.conv_block',
    'instance_regression_head_last_layer': 'offset_head.final_conv',
}
# Items of a trainer's checkpoint that hold training state, not the network.
TRAINING_STATE_ITEMS = ('global_step', 'optimizer', 'backbone_optimizer',
                        'save_counter')

# (DeepLab2 layer path inside an item, our attribute path), first match wins.
# `{low_level}` is filled with the decoder's low-level endpoint of that index.
_LAYERS = (
    (r'_stem', 'stem'),
    (r'_stage(\d)/_block(\d+)/_conv(\d)_bn(?:_act)?',
     r'stage\1_block\2.conv\3'),
    (r'_stage(\d)/_block(\d+)/_shortcut', r'stage\1_block\2.shortcut'),
    (r'_aspp/_conv_bn_act', 'aspp.conv_1x1'),
    (r'_aspp/_aspp_conv(\d)/_conv_bn_act', r'aspp.atrous_conv\1'),
    (r'_aspp/_aspp_pool/_conv_bn_act', 'aspp.pool_conv'),
    (r'_aspp/_proj_conv_bn_act', 'aspp.projection'),
    (r'_low_level_conv(\d)', '{low_level}_projection'),
    (r'_fusion_conv(\d)/_conv1_bn_act', '{low_level}_fusion'),
    (r'_conv1_bn_act', ''),  # A head's StackedConv2DSame of one layer.
    (r'', ''),  # A head's last Conv2D: the item itself.
)
# DeepLab2 variable path inside a layer -> ours inside `ConvNormAct` (a
# separable DeepLab2 conv is depthwise + BN + act, pointwise + BN + act, as
# ours) or inside a plain Conv2D.
_BN = r'(gamma|beta|moving_mean|moving_variance)'
_VARIABLES = (
    (r'_conv/kernel', 'conv.kernel'),
    (r'_batch_norm/' + _BN, r'norm.\1'),
    (r'_depthwise/_depthwise_conv/depthwise_kernel', 'depthwise.kernel'),
    (r'_depthwise/_batch_norm/' + _BN, r'depthwise_norm.\1'),
    (r'_pointwise/_conv/kernel', 'conv.kernel'),
    (r'_pointwise/_batch_norm/' + _BN, r'norm.\1'),
    (r'(kernel|bias)', r'\1'),
)


def our_attribute(item: str, path: str,
                  low_level_features: Sequence[str] = ('res3', 'res2')) -> str:
  """DeepLab2 item + variable path inside it -> our model's attribute chain.

  Args:
    item: a DeepLab2 checkpoint item, a key of ITEMS.
    path: the variable's object path inside the item, without the
      `/.ATTRIBUTES/VARIABLE_VALUE` suffix.
    low_level_features: the decoders' low-level endpoints, in DeepLab2's order
      (its `_low_level_conv1` projects the first).

  Raises:
    KeyError: the item or the path has no counterpart in our model.
  """
  if item not in ITEMS:
    raise KeyError(f'{item}/{path}: no DeepLab2 checkpoint item {item!r} in '
                   f'our model (known: {sorted(ITEMS)})')
  for layer_pattern, layer_target in _LAYERS:
    for variable_pattern, variable_target in _VARIABLES:
      pattern = (f'(?P<layer>{layer_pattern})/(?P<variable>{variable_pattern})'
                 if layer_pattern else f'(?P<variable>{variable_pattern})')
      match = re.fullmatch(pattern, path)
      if not match:
        continue
      layer = ''
      if layer_pattern:
        layer_match = re.fullmatch(layer_pattern, match.group('layer'))
        layer = layer_match.expand(layer_target)
        if '{low_level}' in layer:
          index = int(layer_match.group(1)) - 1
          if index >= len(low_level_features):
            raise KeyError(f'{item}/{path}: low-level feature {index + 1} '
                           f'but the decoder fuses {low_level_features}')
          layer = layer.format(low_level=low_level_features[index])
      variable = re.fullmatch(variable_pattern, match.group('variable')).expand(
          variable_target)
      return '.'.join(p for p in (ITEMS[item], layer, variable) if p)
  raise KeyError(f'{item}/{path}: no counterpart in our model')


# Decoder item -> its (ASPP, low-level, fusion) width options in `presets`.
_DECODER_OPTIONS = {
    'semantic_decoder': ('aspp_channels', 'semantic_low_level_channels',
                         'semantic_decoder_channels'),
    'instance_decoder': ('instance_aspp_channels',
                         'instance_low_level_channels',
                         'instance_decoder_channels'),
}


def _shape(shapes, item, path) -> Optional[Sequence[int]]:
  return shapes.get((item, path))


def _conv_out(shapes, item, layer) -> Tuple[Optional[int], bool]:
  """(output channels, separable) of a DeepLab2 conv layer; None if absent."""
  separable = _shape(shapes, item, f'{layer}/_pointwise/_conv/kernel')
  if separable is not None:
    return int(separable[-1]), True
  standard = _shape(shapes, item, f'{layer}/_conv/kernel')
  return (None if standard is None else int(standard[-1])), False


def _one(values: Mapping[str, Any], what: str) -> Any:
  """The value every part agrees on; our builder has one setting for them."""
  distinct = set(values.values())
  if len(distinct) != 1:
    raise ValueError(f'{what} differs between {dict(values)}; our '
                     f'build_panoptic_deeplab has one setting for them')
  return distinct.pop()


def infer_options(shapes: Mapping[Tuple[str, str], Sequence[int]]
                  ) -> Dict[str, Any]:
  """`build_panoptic_deeplab` options of the network in a DeepLab2 checkpoint.

  Only what shapes tell: backbone width and blocks per stage, decoder, ASPP and
  head widths, separable or regular 5x5 convolutions, the class count. Output
  stride and atrous rates are not in a checkpoint (the config has them).

  Args:
    shapes: (item, path inside the item) -> shape, for every network variable.

  Returns:
    Keyword arguments of `build_panoptic_deeplab` (`num_classes` included when
    the checkpoint has a semantic head), with `backbone_kwargs` holding
    `width_multiplier` and `num_blocks`.
  """
  options: Dict[str, Any] = {}
  stem = _shape(shapes, ENCODER, '_stem/_conv/kernel')
  if stem is None:
    raise ValueError('no encoder/_stem/_conv/kernel: not a DeepLab2 '
                     'Wide-ResNet (wide_resnet41 / swidernet) checkpoint')
  blocks = []
  for stage in range(1, 6):
    count = 0
    while _shape(shapes, ENCODER,
                 f'_stage{stage}/_block{count + 1}/_conv1_bn_act/_conv/kernel'):
      count += 1
    blocks.append(count)
  if min(blocks) == 0:
    raise ValueError(f'blocks per stage {blocks}: not a five-stage DeepLab2 '
                     'Wide-ResNet')
  first = _shape(shapes, ENCODER, '_stage1/_block1/_conv1_bn_act/_conv/kernel')
  width = first[-1] / wide_resnet.stage_specs(41)[0][0][1][0]
  backbone_kwargs = {}
  if width != 1:
    backbone_kwargs['width_multiplier'] = width
  if tuple(blocks) != tuple(len(s) for s in wide_resnet.stage_specs(41)):
    backbone_kwargs['num_blocks'] = tuple(blocks)
  options['backbone_kwargs'] = backbone_kwargs

  decoder_types, head_types = {}, {}
  for item, (aspp_key, low_key, decoder_key) in _DECODER_OPTIONS.items():
    aspp, _ = _conv_out(shapes, item, '_aspp/_conv_bn_act')
    if aspp is None:
      continue
    options[aspp_key] = aspp
    low_level = []
    while True:
      channels, _ = _conv_out(shapes, item,
                              f'_low_level_conv{len(low_level) + 1}')
      if channels is None:
        break
      low_level.append(channels)
    options[low_key] = tuple(low_level)
    options[decoder_key], decoder_types[item] = _conv_out(
        shapes, item, '_fusion_conv1/_conv1_bn_act')
  for key, item in (('semantic_head_channels',
                     'semantic_head_without_last_layer'),
                    ('instance_head_channels',
                     'instance_center_head_without_last_layer'),
                    ('instance_head_channels',
                     'instance_regression_head_without_last_layer')):
    channels, separable = _conv_out(shapes, item, '_conv1_bn_act')
    if channels is None:
      continue
    if options.setdefault(key, channels) != channels:
      raise ValueError(f'center and regression heads of {options[key]} and '
                       f'{channels} channels; our builder has one width')
    head_types[item] = separable
  conv_type = {True: 'depthwise_separable_conv', False: 'standard_conv'}
  if decoder_types:
    options['decoder_conv_type'] = conv_type[_one(decoder_types,
                                                  'decoder_conv_type')]
  if head_types:
    options['head_conv_type'] = conv_type[_one(head_types, 'head_conv_type')]
  last = _shape(shapes, 'semantic_last_layer', 'kernel')
  if last is not None:
    options['num_classes'] = int(last[-1])
  return options
