"""Aligned Xception (X-65, X-71): the Panoptic-DeepLab teacher backbone.

Naive-Student's teacher is Panoptic-DeepLab with Xception-71 (Chen et al., ECCV
2020, Sec. 4), the "modified aligned Xception" of DeepLabv3+ (Chen et al., ECCV
2018): max-pools replaced by strided separable convs, so atrous convolution can
keep any output stride. Architecture, endpoints and activation placement follow
tensorflow/models research/deeplab/core/xception.py (`xception_65`,
`xception_71`) and feature_extractor.py (`DECODER_END_POINTS`), the code base
Panoptic-DeepLab X-71 was trained with:

  * entry flow: conv 3x3/2 (32) -> conv 3x3 (64) -> Xception modules with 1x1
    conv shortcuts; X-65: 128/2, 256/2, 728/2; X-71: 128/2, 256/1, 256/2,
    728/1, 728/2;
  * middle flow: 16 modules of three 728 separable convs, identity shortcut;
  * exit flow: (728, 1024, 1024)/2 with conv shortcut, then (1536, 1536, 2048)
    without shortcut.

Activation placement (DeepLab's `activation_fn_in_separable_conv`): False in
every module but the last, i.e. each separable conv is ReLU -> depthwise 3x3 ->
BN -> pointwise 1x1 -> BN (pre-activation; a module outputs the un-activated
sum); the last module uses depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU,
so the final features are non-negative. Parameters do not depend on this choice.

Padding: DeepLab pads strided convs explicitly (`use_explicit_padding`); we use
Keras 'same'. Both are identical when every strided conv sees an odd size, i.e.
for sizes 32k+1 such as the paper's 1025x2049 crops; at even sizes 'same'
shifts a strided 3x3 conv's output by half an input pixel.
"""

import dataclasses
from typing import Optional, Sequence, Tuple, Union

import keras

from official_naive_student import common
from official_naive_student.modeling.layers import conv_norm
from official_naive_student.modeling.layers import recompute as recompute_lib

_SHORTCUTS = ('conv', 'sum', 'none')


@dataclasses.dataclass(frozen=True)
class _UnitSpec:
  """One Xception module of the nominal (output stride 32) network."""
  filters: Tuple[int, int, int]
  stride: int
  shortcut: str
  # Endpoint taken from this module's second separable conv (DeepLab's
  # 'separable_conv2_pointwise'), which runs before the module's stride.
  endpoint: Optional[str] = None
  activation_in_separable: bool = False


def _entry(filters, stride, endpoint=None):
  return _UnitSpec((filters,) * 3, stride, 'conv', endpoint)


# Entry flows with the stride-4 (RES2) and stride-8 (RES3) decoder features of
# DeepLab's feature_extractor.DECODER_END_POINTS.
_ENTRY_FLOWS = {
    65: (_entry(128, 2), _entry(256, 2, common.RES2),
         _entry(728, 2, common.RES3)),
    71: (_entry(128, 2), _entry(256, 1), _entry(256, 2, common.RES2),
         _entry(728, 1), _entry(728, 2, common.RES3)),
}
_ENTRY_FLOWS[41] = _ENTRY_FLOWS[65]
_MIDDLE_UNITS = {41: 8, 65: 16, 71: 16}
_MIDDLE_UNIT = _UnitSpec((728, 728, 728), 1, 'sum')
_EXIT_FLOW = (
    _UnitSpec((728, 1024, 1024), 2, 'conv', common.RES4),
    _UnitSpec((1536, 1536, 2048), 1, 'none', activation_in_separable=True),
)
_STEM_FILTERS = (32, 64)


def parse_depth(depth: Union[int, str]) -> int:
  """Maps 71, '71', 'xception71' or 'xception_71' to 71 (same for 41, 65)."""
  text = str(depth).lower().replace('xception', '').strip('_-')
  if not text.isdigit() or int(text) not in _MIDDLE_UNITS:
    raise ValueError(f'Xception depth {depth!r} is not one of '
                     f'{sorted(_MIDDLE_UNITS)} (or "xception<depth>").')
  return int(text)


@keras.saving.register_keras_serializable(package='naive_student')
class XceptionModule(keras.layers.Layer):
  """Three separable 3x3 convs plus a shortcut (DeepLab's `xception_module`).

  Args:
    filters: three ints. Output channels of the three separable convs.
    strides: int. Stride of the third conv (and of a 'conv' shortcut).
    dilation_rate: int. Atrous rate of all three depthwise convs.
    shortcut: 'conv' (1x1 conv + BN), 'sum' (identity) or 'none'.
    activation_in_separable: bool. False: ReLU -> dw -> BN -> pw -> BN for each
      conv; True: dw -> BN -> ReLU -> pw -> BN -> ReLU.
    sync_bn: bool. Synchronize batch norm across replicas.

  Call returns `(outputs, features)`, `features` being the second conv's
  output (the module's pre-stride decoder feature).
  """

  def __init__(self,
               filters: Sequence[int],
               strides: int = 1,
               dilation_rate: int = 1,
               shortcut: str = 'conv',
               activation_in_separable: bool = False,
               sync_bn: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    filters = tuple(int(f) for f in filters)
    if len(filters) != 3:
      raise ValueError(f'{self.name}: expected 3 filters, got {filters}.')
    if shortcut not in _SHORTCUTS:
      raise ValueError(
          f'{self.name}: shortcut {shortcut!r} is not one of {_SHORTCUTS}.')
    if strides > 1 and dilation_rate > 1:
      raise ValueError(f'{self.name}: strides {strides} and dilation_rate '
                       f'{dilation_rate} cannot both exceed 1.')
    self._config = dict(
        filters=filters, strides=strides, dilation_rate=dilation_rate,
        shortcut=shortcut, activation_in_separable=activation_in_separable,
        sync_bn=sync_bn)
    act = 'relu' if activation_in_separable else None
    # Named attributes, not a list: Keras 3 leaves layers held in lists out of
    # tf.train.Checkpoint.
    self.separable_conv1, self.separable_conv2, self.separable_conv3 = (
        conv_norm.ConvNormAct(
            filters=f, kernel_size=3, strides=strides if i == 2 else 1,
            dilation_rate=dilation_rate, separable=True, activation=act,
            activation_in_separable=activation_in_separable, sync_bn=sync_bn,
            name=f'separable_conv{i + 1}')
        for i, f in enumerate(filters))
    self.shortcut = None
    if shortcut == 'conv':
      self.shortcut = conv_norm.ConvNormAct(
          filters=filters[-1], kernel_size=1, strides=strides, activation=None,
          sync_bn=sync_bn, name='shortcut')

  def call(self, inputs, training=None):
    x = inputs
    features = None
    convs = (self.separable_conv1, self.separable_conv2, self.separable_conv3)
    for i, conv in enumerate(convs):
      if not self._config['activation_in_separable']:
        x = keras.ops.relu(x)
      x = conv(x, training=training)
      if i == 1:
        features = x
    if self.shortcut is not None:
      x = x + self.shortcut(inputs, training=training)
    elif self._config['shortcut'] == 'sum':
      x = x + inputs
    return x, features

  def get_config(self):
    return {**super().get_config(), **self._config}


@keras.saving.register_keras_serializable(package='naive_student')
class Xception(keras.Model):
  """Aligned Xception returning decoder endpoints {res2, res3, res4, res5}.

  Output stride is set by atrous convolution as DeepLab's `stack_blocks_dense`
  does: once the running stride reaches `output_stride`, later modules drop
  their stride and the atrous rate grows by it, starting with the next module
  (OS16: exit flow rate 1 then 2; OS8: entry block5 and after at rate 1, 2, 4).

  Args:
    depth: 41, 65 or 71 (or 'xception65', 'xception71'). Panoptic-DeepLab's
      Cityscapes teacher is 71.
    output_stride: 8, 16 or 32. Stride of `res5` relative to the input.
    width_multiplier: float. Scales every channel count (tiny test models).
    num_middle_blocks: int or None. Middle-flow modules; None takes the
      depth's 16 (8 for X-41). Small values give tiny models of the same code.
    sync_bn: bool. Synchronize batch norm across replicas.
    recompute: bool (or 'blocks'). Gradient checkpointing: keep only each
      Xception module's input for the backward pass and recompute the module
      there (`layers/recompute.py`); same gradients, less activation memory.

  Attributes:
    output_stride: int. Stride of `res5`.
    endpoint_channels: dict endpoint -> channels, for decoders.
    endpoint_strides: dict endpoint -> stride relative to the input.

  Example:
    backbone = Xception(depth=71, output_stride=16)
    features = backbone(images)  # images: normalized float [B, H, W, 3].
    features['res5']  # [B, ceil(H / 16), ceil(W / 16), 2048]
  """

  def __init__(self,
               depth: Union[int, str] = 71,
               output_stride: int = 16,
               width_multiplier: float = 1.0,
               num_middle_blocks: Optional[int] = None,
               sync_bn: bool = True,
               recompute: Union[bool, str] = False,
               **kwargs):
    super().__init__(**kwargs)
    depth_int = parse_depth(depth)
    self.recompute = recompute_lib.parse_mode(
        recompute, allowed=(recompute_lib.BLOCKS,))
    if output_stride not in (8, 16, 32):
      raise ValueError(f'output_stride {output_stride} is not 8, 16 or 32.')
    if width_multiplier <= 0:
      raise ValueError(f'width_multiplier {width_multiplier} must be > 0.')
    if num_middle_blocks is None:
      num_middle_blocks = _MIDDLE_UNITS[depth_int]
    if num_middle_blocks < 0:
      raise ValueError(f'num_middle_blocks {num_middle_blocks} must be >= 0.')
    self._config = dict(
        depth=depth, output_stride=output_stride,
        width_multiplier=width_multiplier,
        num_middle_blocks=num_middle_blocks, sync_bn=sync_bn,
        recompute=recompute)
    self.output_stride = output_stride

    def scaled(channels):
      return max(1, int(round(channels * width_multiplier)))

    # === Stem ===
    # Layers are named attributes (setattr), not lists: Keras 3 leaves layers
    # held in lists out of tf.train.Checkpoint.
    self._layer_names = []
    for i, f in enumerate(_STEM_FILTERS):
      self._add(f'entry_flow_conv1_{i + 1}', conv_norm.ConvNormAct(
          filters=scaled(f), kernel_size=3, strides=2 if i == 0 else 1,
          sync_bn=sync_bn, name=f'entry_flow_conv1_{i + 1}'))
    # === Xception modules, strides turned into atrous rates ===
    units = [(f'entry_flow_block{i + 1}', u)
             for i, u in enumerate(_ENTRY_FLOWS[depth_int])]
    units += [(f'middle_flow_unit{i + 1}', _MIDDLE_UNIT)
              for i in range(num_middle_blocks)]
    units += [(f'exit_flow_block{i + 1}', u) for i, u in enumerate(_EXIT_FLOW)]
    current_stride, rate = 2, 1
    self._endpoint_of = {}
    self.endpoint_channels = {}
    self.endpoint_strides = {}
    for name, unit in units:
      if current_stride == output_stride:
        strides, dilation_rate = 1, rate
        rate *= unit.stride
      else:
        strides, dilation_rate = unit.stride, 1
      filters = tuple(scaled(f) for f in unit.filters)
      self._add(name, XceptionModule(
          filters=filters, strides=strides, dilation_rate=dilation_rate,
          shortcut=unit.shortcut,
          activation_in_separable=unit.activation_in_separable,
          sync_bn=sync_bn, name=name))
      if unit.endpoint:
        self._endpoint_of[name] = unit.endpoint
        self.endpoint_channels[unit.endpoint] = filters[1]
        self.endpoint_strides[unit.endpoint] = current_stride
      current_stride *= strides
    self.endpoint_channels[common.RES5] = scaled(_EXIT_FLOW[-1].filters[-1])
    self.endpoint_strides[common.RES5] = current_stride

  def _add(self, name, layer):
    setattr(self, name, layer)
    self._layer_names.append(name)

  def call(self, images, training=None):
    """Maps normalized images [B, H, W, 3] to a dict of endpoint features."""
    x = images
    endpoints = {}
    recompute = bool(self.recompute) and recompute_lib.is_recording()
    for name in self._layer_names:
      layer = getattr(self, name)
      if isinstance(layer, XceptionModule):
        if recompute and layer.built:
          x, features = recompute_lib.recompute(
              lambda x, layer=layer: layer(x, training=training), [layer])(x)
        else:
          x, features = layer(x, training=training)
        if name in self._endpoint_of:
          endpoints[self._endpoint_of[name]] = features
      else:
        x = layer(x, training=training)
    endpoints[common.RES5] = x
    return endpoints

  def get_config(self):
    return {'name': self.name, 'trainable': self.trainable, **self._config}

  @classmethod
  def from_config(cls, config):
    return cls(**config)
