"""Where each variable of a TF1 DeepLab `xception_71` checkpoint lives in ours.

The TF1 DeepLab model zoo (tensorflow/models research/deeplab,
`g3doc/model_zoo.md`) publishes the ImageNet-pretrained Xception-71 as
`xception_71_2018_05_09.tar.gz`: a name-based TF1 checkpoint with TF-Slim
variable names built by `research/deeplab/core/xception.py` (`xception_71`):

  xception_71/entry_flow/conv1_{1,2}/weights, .../BatchNorm/{gamma,beta,
      moving_mean,moving_variance}
  xception_71/{entry_flow/block1..5, middle_flow/block1 (units 1..16),
      exit_flow/block1..2}/unit_<u>/xception_module/
      separable_conv{1,2,3}_depthwise/depthwise_weights  [3, 3, in, 1]
      separable_conv{1,2,3}_depthwise/BatchNorm/...
      separable_conv{1,2,3}_pointwise/weights            [1, 1, in, out]
      separable_conv{1,2,3}_pointwise/BatchNorm/...
      shortcut/weights, shortcut/BatchNorm/...  (entry flow, exit_flow/block1)
  xception_71/logits/{weights,biases}  (the ImageNet classifier)

Our `backbones/xception.Xception(depth=71)` has the same layers in the same
order (stem 32, 64; entry flow 128/2, 256/1, 256/2, 728/1, 728/2 with 1x1 conv
shortcuts; 16 middle units of 3 x 728 with identity shortcuts; exit flow
(728, 1024, 1024)/2 with a conv shortcut and (1536, 1536, 2048) without), so
the mapping is one-to-one; only the names differ:

  TF1 (under xception_71/)               ours (under backbone.)
  entry_flow/conv1_<i>                   entry_flow_conv1_<i>
  entry_flow/block<b>/unit_1             entry_flow_block<b>
  middle_flow/block1/unit_<u>            middle_flow_unit<u>
  exit_flow/block<b>/unit_1              exit_flow_block<b>
  xception_module/separable_conv<k>      separable_conv<k>
    _depthwise/depthwise_weights           .depthwise.kernel
    _depthwise/BatchNorm/<v>               .depthwise_norm.<v>
    _pointwise/weights                     .conv.kernel
    _pointwise/BatchNorm/<v>               .norm.<v>
  xception_module/shortcut/weights       shortcut.conv.kernel
  xception_module/shortcut/BatchNorm/<v> shortcut.norm.<v>
  conv1_<i>/weights, BatchNorm/<v>       .conv.kernel, .norm.<v>

Slim's conv and separable-conv kernels have Keras' layouts ([h, w, in, out],
depthwise [h, w, in, multiplier]), so values copy as they are. Batch norm:
TF1 DeepLab's epsilon is 1e-3, ours too. The checkpoint holds no decoder or
head: it initializes the backbone alone. What is not the same computation
(the network's parameters are): DeepLab pads strided convs explicitly, ours
uses 'same' (identical at sizes 32k+1, see `backbones/xception.py`).
"""

import re
from typing import Dict, Mapping, Sequence

SCOPE = 'xception_71'
# Values of the checkpoint that are not the backbone: the ImageNet classifier
# and the trainer's step. They are skipped and counted.
SKIPPED = (re.compile(rf'{SCOPE}/logits/(weights|biases)'),
           re.compile(r'global_step'))

_BN = r'BatchNorm/(gamma|beta|moving_mean|moving_variance)'
# (TF1 layer path under the scope, our layer attribute under `backbone`).
_LAYERS = (
    (r'entry_flow/conv1_([12])', r'entry_flow_conv1_\1'),
    (r'entry_flow/block([1-5])/unit_1/xception_module', r'entry_flow_block\1'),
    (r'middle_flow/block1/unit_(\d+)/xception_module', r'middle_flow_unit\1'),
    (r'exit_flow/block([12])/unit_1/xception_module', r'exit_flow_block\1'),
)
# (TF1 variable path inside a layer, ours inside the layer).
_VARIABLES = (
    (r'weights', 'conv.kernel'),
    (_BN, r'norm.\1'),
    (r'separable_conv([123])_depthwise/depthwise_weights',
     r'separable_conv\1.depthwise.kernel'),
    (r'separable_conv([123])_depthwise/' + _BN,
     r'separable_conv\1.depthwise_norm.\2'),
    (r'separable_conv([123])_pointwise/weights', r'separable_conv\1.conv.kernel'),
    (r'separable_conv([123])_pointwise/' + _BN, r'separable_conv\1.norm.\2'),
    (r'shortcut/weights', 'shortcut.conv.kernel'),
    (r'shortcut/' + _BN, r'shortcut.norm.\1'),
)


def is_skipped(name: str) -> bool:
  """Whether `name` is training state or the classifier, not the backbone."""
  return any(p.fullmatch(name) for p in SKIPPED)


def our_attribute(name: str) -> str:
  """TF1 DeepLab xception_71 variable name -> our model's attribute chain.

  E.g. 'xception_71/entry_flow/block1/unit_1/xception_module/
  separable_conv1_depthwise/depthwise_weights' ->
  'backbone.entry_flow_block1.separable_conv1.depthwise.kernel'.

  Raises:
    KeyError: the name has no counterpart in our Xception-71.
  """
  prefix = SCOPE + '/'
  if not name.startswith(prefix):
    raise KeyError(f'{name}: not under {prefix!r}; only TF1 DeepLab '
                   f'{SCOPE} checkpoints are supported')
  path = name[len(prefix):]
  for layer_pattern, layer_target in _LAYERS:
    for variable_pattern, variable_target in _VARIABLES:
      match = re.fullmatch(
          f'(?P<layer>{layer_pattern})/(?P<variable>{variable_pattern})', path)
      if not match:
        continue
      layer = re.fullmatch(layer_pattern, match.group('layer')).expand(
          layer_target)
      variable = re.fullmatch(variable_pattern,
                              match.group('variable')).expand(variable_target)
      return f'backbone.{layer}.{variable}'
  raise KeyError(f'{name}: no counterpart in our Xception-71')


def infer_width_multiplier(shapes: Mapping[str, Sequence[int]]) -> float:
  """Our `width_multiplier` for the checkpoint (1.0 for the published one).

  Read off the first conv (32 channels in xception_71); any other width in
  the checkpoint that disagrees shows up as a shape mismatch on import.
  """
  name = f'{SCOPE}/entry_flow/conv1_1/weights'
  if name not in shapes:
    raise ValueError(f'no {name}: not a TF1 DeepLab {SCOPE} checkpoint')
  return float(shapes[name][-1]) / 32


def tf1_names(num_middle_units: int = 16) -> Dict[str, str]:
  """Every backbone variable name of xception_71 -> our attribute (docs)."""
  names = []
  bn = ('gamma', 'beta', 'moving_mean', 'moving_variance')
  for i in (1, 2):
    names.append(f'{SCOPE}/entry_flow/conv1_{i}/weights')
    names += [f'{SCOPE}/entry_flow/conv1_{i}/BatchNorm/{v}' for v in bn]
  modules = [(f'entry_flow/block{b}/unit_1', True) for b in range(1, 6)]
  modules += [(f'middle_flow/block1/unit_{u}', False)
              for u in range(1, num_middle_units + 1)]
  modules += [('exit_flow/block1/unit_1', True),
              ('exit_flow/block2/unit_1', False)]
  for module, shortcut in modules:
    base = f'{SCOPE}/{module}/xception_module'
    for k in (1, 2, 3):
      names.append(f'{base}/separable_conv{k}_depthwise/depthwise_weights')
      names += [f'{base}/separable_conv{k}_depthwise/BatchNorm/{v}'
                for v in bn]
      names.append(f'{base}/separable_conv{k}_pointwise/weights')
      names += [f'{base}/separable_conv{k}_pointwise/BatchNorm/{v}'
                for v in bn]
    if shortcut:
      names.append(f'{base}/shortcut/weights')
      names += [f'{base}/shortcut/BatchNorm/{v}' for v in bn]
  return {n: our_attribute(n) for n in names}
