"""What a DeepLab2 experiment textproto says that a checkpoint does not.

A checkpoint holds widths; output stride, atrous rates, the endpoints the
decoders fuse, the label space and the post-processing settings live only in
DeepLab2's `ExperimentOptions` textproto. DeepLab2 parses it with protos that
need a `protoc` step; reading the few scalar fields needed here takes a small
text-format reader instead, so importing needs no DeepLab2 code.
"""

import re
from typing import Any, Dict, List, Optional

# Token: a quoted string, a brace, a colon, or a bare word / number.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:]'
                    r'|[^\s{}:#"\']+')
# DeepLab2 dataset names -> ours (`datasets.get_dataset_info`).
DATASETS = {'cityscapes_panoptic': 'cityscapes'}
# DeepLab2 Wide-ResNet backbones our WideResNet (layout 'deeplab2') builds.
BACKBONES = ('wide_resnet41', 'swidernet')
# `evaluator.proto` defaults of the post-processing fields.
_POST_PROCESSING_DEFAULTS = dict(center_score_threshold=0.1, nms_kernel=3,
                                 keep_k_centers=400, stuff_area_limit=0)
_OUTPUT_STRIDE_DEFAULT = 32  # model.proto BackboneOptions.output_stride.


def _value(token: str) -> Any:
  if token[0] in '"\'':
    return token[1:-1].encode().decode('unicode_escape')
  for kind in (int, float):
    try:
      return kind(token)
    except ValueError:
      pass
  return {'true': True, 'false': False}.get(token, token)


def parse_textproto(text: str) -> Dict[str, List[Any]]:
  """Text-format message -> {field: [values]}; sub-messages are such dicts.

  Every field maps to a list (repeated or not); `_get` takes the first.
  """
  lines = [line.split('#', 1)[0] if '"' not in line and "'" not in line
           else line for line in text.splitlines()]
  tokens = _TOKEN.findall('\n'.join(lines))
  stack: List[Dict[str, List[Any]]] = [{}]
  index = 0
  while index < len(tokens):
    token = tokens[index]
    if token == '}':
      stack.pop()
      if not stack:
        raise ValueError('textproto: unbalanced "}"')
      index += 1
      continue
    name = token
    index += 1
    if index < len(tokens) and tokens[index] == ':':
      index += 1
    if index >= len(tokens):
      raise ValueError(f'textproto: field {name!r} has no value')
    if tokens[index] == '{':
      message: Dict[str, List[Any]] = {}
      stack[-1].setdefault(name, []).append(message)
      stack.append(message)
    else:
      stack[-1].setdefault(name, []).append(_value(tokens[index]))
    index += 1
  if len(stack) != 1:
    raise ValueError('textproto: unbalanced "{"')
  return stack[0]


def _get(message: Dict[str, List[Any]], path: str, default: Any = None) -> Any:
  """First value at a dotted field path, or `default`."""
  for name in path.split('.'):
    if not isinstance(message, dict) or not message.get(name):
      return default
    value = message[name]
    message = value[0]
  return message


def _all(message, path: str) -> List[Any]:
  parent, _, name = path.rpartition('.')
  holder = _get(message, parent, {}) if parent else message
  return list(holder.get(name, [])) if isinstance(holder, dict) else []


def read_settings(text: str) -> Dict[str, Any]:
  """The import-relevant settings of a DeepLab2 Panoptic-DeepLab textproto.

  Returns:
    dict with output_stride, atrous_rates (as configured, at that stride),
    low_level_features, dataset (our name or None), num_classes (or None) and
    post_processing (center_score_threshold, nms_kernel, keep_k_centers,
    stuff_area_limit with evaluator.proto defaults).

  Raises:
    ValueError: not a Panoptic-DeepLab on a Wide-ResNet, or decoders whose
      endpoints or rates our model cannot take.
  """
  config = parse_textproto(text)
  model = _get(config, 'model_options', {})
  if 'panoptic_deeplab' not in model:
    raise ValueError('the config has no model_options.panoptic_deeplab; only '
                     'Panoptic-DeepLab checkpoints can be imported')
  backbone = _get(model, 'backbone.name')
  if backbone not in BACKBONES:
    raise ValueError(f'backbone {backbone!r}: only DeepLab2 {BACKBONES} '
                     'checkpoints can be imported')
  rates = _all(model, 'decoder.atrous_rates')
  instance_rates = _all(
      model, 'panoptic_deeplab.instance.instance_decoder_override.atrous_rates')
  if instance_rates and instance_rates != rates:
    raise ValueError(f'instance decoder atrous rates {instance_rates} differ '
                     f'from the semantic decoder\'s {rates}; our builder '
                     'shares them')
  keys = [_get(m, 'feature_key') for m in
          _all(model, 'panoptic_deeplab.low_level')]
  instance_keys = [_get(m, 'feature_key') for m in _all(
      model, 'panoptic_deeplab.instance.low_level_override')]
  high = {_get(model, 'decoder.feature_key', 'res5'), _get(
      model, 'panoptic_deeplab.instance.instance_decoder_override.feature_key',
      'res5')}
  if high != {'res5'} or (instance_keys and instance_keys != keys):
    raise ValueError(f'decoders on {sorted(high)} fusing {keys} / '
                     f'{instance_keys}; ours take res5 and share low levels')
  dataset = _get(config, 'train_dataset_options.dataset')
  evaluator = _get(config, 'evaluator_options', {})
  return dict(
      output_stride=_get(model, 'backbone.output_stride',
                         _OUTPUT_STRIDE_DEFAULT),
      atrous_rates=tuple(rates) or None,
      low_level_features=tuple(keys),
      dataset=DATASETS.get(dataset) if dataset else None,
      deeplab2_dataset=dataset,
      num_classes=_get(model, 'panoptic_deeplab.semantic_head.output_channels'),
      post_processing={key: _get(evaluator, key, default)
                       for key, default in _POST_PROCESSING_DEFAULTS.items()})


def optional_settings(path: Optional[str]) -> Optional[Dict[str, Any]]:
  """`read_settings` of the file at `path`, or None without one."""
  if not path:
    return None
  with open(path) as f:
    return read_settings(f.read())
