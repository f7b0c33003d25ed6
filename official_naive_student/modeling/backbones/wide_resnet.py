"""Wide-ResNet-38 and -41: the Naive-Student backbones, with atrous output strides.

WR-38 is model A of Wu et al., "Wider or Deeper: Revisiting the ResNet Model for
Visual Recognition" (Pattern Recognition 2019). WR-41 (Naive-Student, ECCV 2020)
drops WR-38's last block B7, repeats B6 three times and widens B5's first 3x3
conv to 1024 channels; with those widths it is DeepLab2's `wide_resnet41`
(SWideRNet-(1, 1, 1), 109.07M weights) and, with a 1000-way classifier, the
paper's 111M. Layout as in DeepLab2 `model/encoder/axial_resnet.py`
(backbone_type='wider_resnet'): a stride-2 3x3 stem, then five stages whose first
block carries the stride:

  stage  paper  block (channels)         blocks WR-38 / WR-41  stride  endpoint
  1      B2     3x3 128, 3x3 128         3 / 3                 2
  2      B3     3x3 256, 3x3 256         3 / 3                 4       res2
  3      B4     3x3 512, 3x3 512         6 / 6                 8       res3
  4      B5     3x3 512|1024, 3x3 1024   3 / 3                 16      res4
  5      B6     1x1 512, 3x3 1024, 1x1 2048      1 / 3         32      res5
         B7     1x1 1024, 3x3 2048, 1x1 4096     1 / 0 (WR-38 only)

Strides beyond `output_stride` become atrous rates (DeepLab2 `BlockGroup`).
"""

from typing import List, Optional, Sequence, Tuple, Union

import gin
import keras

from official_naive_student import common
from official_naive_student.modeling.layers import blocks
from official_naive_student.modeling.layers import conv_norm

_STEM_CHANNELS = 64
_ENDPOINTS = (common.RES2, common.RES3, common.RES4, common.RES5)
_BASIC = 'basic'
_BOTTLENECK = 'bottleneck'

# Per stage: stride of its first block, then (block type, filters) per block.
_ARCHITECTURES = {
    38: (
        (1, [(_BASIC, (128, 128))] * 3),
        (2, [(_BASIC, (256, 256))] * 3),
        (2, [(_BASIC, (512, 512))] * 6),
        (2, [(_BASIC, (512, 1024))] * 3),
        (2, [(_BOTTLENECK, (512, 1024, 2048)),
             (_BOTTLENECK, (1024, 2048, 4096))]),
    ),
    41: (
        (1, [(_BASIC, (128, 128))] * 3),
        (2, [(_BASIC, (256, 256))] * 3),
        (2, [(_BASIC, (512, 512))] * 6),
        (2, [(_BASIC, (1024, 1024))] * 3),
        (2, [(_BOTTLENECK, (512, 1024, 2048))] * 3),
    ),
}
# Stage index (0-based) whose output is each endpoint.
_ENDPOINT_STAGES = {common.RES2: 1, common.RES3: 2, common.RES4: 3,
                    common.RES5: 4}


def parse_depth(depth: Union[int, str]) -> int:
  """Maps 38, 41, 'wide_resnet38' or 'wide_resnet41' to 38 or 41."""
  value = str(depth).lower().replace('wide_resnet', '').replace('wr', '')
  value = value.strip('-_')
  if not value.isdigit() or int(value) not in _ARCHITECTURES:
    raise ValueError(f'depth must be one of 38, 41, wide_resnet38, '
                     f'wide_resnet41; got {depth!r}.')
  return int(value)


def scale_channels(channels: int, multiplier: float) -> int:
  """Scales a channel count, rounding to a multiple of 8 once it is >= 8."""
  scaled = channels * multiplier
  if scaled >= 8:
    return max(8, int(round(scaled / 8)) * 8)
  return max(1, int(round(scaled)))


def stage_specs(depth: Union[int, str],
                num_blocks: Optional[Sequence[int]] = None
                ) -> Tuple[Tuple[int, list], ...]:
  """Returns (stride, [(block type, filters), ...]) per stage.

  `num_blocks` (5 ints) overrides the block count of each stage: the stage's
  blocks are truncated, or its last block is repeated.
  """
  specs = _ARCHITECTURES[parse_depth(depth)]
  if num_blocks is None:
    return specs
  if len(num_blocks) != len(specs) or min(num_blocks) < 1:
    raise ValueError(f'num_blocks must be {len(specs)} ints >= 1, '
                     f'got {num_blocks}.')
  out = []
  for (stride, block_list), n in zip(specs, num_blocks):
    out.append((stride, (block_list + [block_list[-1]] * n)[:n]))
  return tuple(out)


def block_layout(depth: Union[int, str],
                 output_stride: int = 16,
                 multi_grid: Optional[Sequence[int]] = None,
                 num_blocks: Optional[Sequence[int]] = None) -> List[List[dict]]:
  """Plans every block: type, filters, stride and atrous rates (DeepLab2 rules).

  A stage's first block strides only while the network is below
  `output_stride`; beyond it the stride becomes an atrous rate equal to the
  original stride / output_stride. The first conv of a de-strided block keeps
  the rate of its input, the later convs take the rate of its output
  (DeepLab2 `BlockGroup`, `basic_block_second_conv_atrous_rate`).

  Returns:
    One list per stage of dicts with keys kind, filters, strides, rate,
    rate_after and input_stride (the stride the non-atrous network has at the
    block's input, which decides drop path).
  """
  if output_stride not in (8, 16, 32):
    raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}.')
  specs = stage_specs(depth, num_blocks)
  if multi_grid is not None and len(multi_grid) != len(specs[-1][1]):
    raise ValueError(f'multi_grid {tuple(multi_grid)} needs one rate per block '
                     f'of the last stage ({len(specs[-1][1])}).')
  layout = []
  input_stride = 2  # The stem already halved the input.
  for stage_index, (stride, block_list) in enumerate(specs):
    last_stage = stage_index == len(specs) - 1
    output_stride_of_stage = input_stride * stride
    stage = []
    for block_index, (kind, filters) in enumerate(block_list):
      current = input_stride if block_index == 0 else output_stride_of_stage
      strides = stride if block_index == 0 and current < output_stride else 1
      grid = multi_grid[block_index] if last_stage and multi_grid else 1
      rate = max(1, current // output_stride) * grid
      if strides > 1 and rate > 1:
        raise ValueError(f'multi_grid {tuple(multi_grid)}: a strided block '
                         f'cannot be atrous; use multi_grid[0] = 1 at output '
                         f'stride {output_stride}.')
      stage.append(dict(
          kind=kind, filters=filters, strides=strides, rate=rate,
          rate_after=max(1, output_stride_of_stage // output_stride) * grid,
          input_stride=current))
    layout.append(stage)
    input_stride = output_stride_of_stage
  return layout


@gin.register
@keras.saving.register_keras_serializable(package='naive_student')
class WideResNet(keras.Model):
  """Wide-ResNet-38/41 returning the res2..res5 endpoints for a decoder.

  Args:
    depth: 38, 41, 'wide_resnet38' or 'wide_resnet41'.
    output_stride: 8, 16 or 32. Stride of res5; stages beyond it use atrous
      convolution instead of striding.
    multi_grid: tuple of ints or None. Atrous-rate multipliers of the blocks of
      the last stage (e.g. (1, 2, 4) for WR-41's three B6 blocks).
    drop_path_keep_prob: float. Constant survival probability of every residual
      branch in stages at stride >= `drop_path_beyond_stride` (paper: 0.8).
    drop_path_beyond_stride: int. DeepLab2's SWideRNet uses 4 (all but B2).
    width_multiplier: float. Scales every channel count (tiny models).
    num_blocks: 5 ints or None. Block count per stage (stage 1..5); None keeps
      the architecture's counts.
    zero_init_residual: bool. Start each block's last BN gamma at zero.
    sync_bn: bool. Synchronize batch norm across replicas.
    kernel_initializer: Keras initializer of every convolution kernel.

  Call: images float [B, H, W, 3], already normalized ->
    {res2: [B, H/4, W/4, C2], res3: /8, res4: /min(16, os), res5: /os}.
  """

  def __init__(self,
               depth: Union[int, str] = 41,
               output_stride: int = 16,
               multi_grid: Optional[Sequence[int]] = None,
               drop_path_keep_prob: float = 1.0,
               drop_path_beyond_stride: int = 4,
               width_multiplier: float = 1.0,
               num_blocks: Optional[Sequence[int]] = None,
               zero_init_residual: bool = True,
               sync_bn: bool = True,
               kernel_initializer='he_normal',
               **kwargs):
    super().__init__(**kwargs)
    layout = block_layout(depth, output_stride, multi_grid, num_blocks)
    # === Config ===
    self._config = dict(
        depth=depth, output_stride=output_stride,
        multi_grid=None if multi_grid is None else tuple(multi_grid),
        drop_path_keep_prob=drop_path_keep_prob,
        drop_path_beyond_stride=drop_path_beyond_stride,
        width_multiplier=width_multiplier,
        num_blocks=None if num_blocks is None else tuple(num_blocks),
        zero_init_residual=zero_init_residual, sync_bn=sync_bn,
        kernel_initializer=keras.initializers.serialize(
            keras.initializers.get(kernel_initializer)))
    self.output_stride = output_stride
    # Each layer deserializes its own initializer object from this config.
    init_config = self._config['kernel_initializer']

    # === Layers ===
    self.stem = conv_norm.ConvNormAct(
        scale_channels(_STEM_CHANNELS, width_multiplier), 3, strides=2,
        sync_bn=sync_bn, kernel_initializer=init_config, name='stem')
    # Blocks are attributes (`stage3_block2`), not nested lists, because
    # TensorFlow checkpoints only follow attributes of Keras 3 models.
    self._block_names = []
    self.stage_channels = []
    for stage_index, stage in enumerate(layout):
      stage_names = []
      for block_index, spec in enumerate(stage):
        name = f'stage{stage_index + 1}_block{block_index + 1}'
        keep_prob = (drop_path_keep_prob
                     if spec['input_stride'] >= drop_path_beyond_stride
                     else 1.0)
        common_kwargs = dict(
            filters=[scale_channels(f, width_multiplier)
                     for f in spec['filters']],
            strides=spec['strides'], dilation_rate=spec['rate'],
            drop_path_keep_prob=keep_prob,
            zero_init_residual=zero_init_residual, sync_bn=sync_bn,
            kernel_initializer=init_config, name=name)
        if spec['kind'] == _BASIC:
          block = blocks.BasicBlock(second_dilation_rate=spec['rate_after'],
                                    **common_kwargs)
        else:
          block = blocks.BottleneckBlock(**common_kwargs)
        setattr(self, name, block)
        stage_names.append(name)
      self._block_names.append(tuple(stage_names))
      self.stage_channels.append(block.out_channels)
    self.endpoint_channels = {
        name: self.stage_channels[index]
        for name, index in _ENDPOINT_STAGES.items()}

  @property
  def stages(self):
    """The residual blocks, as one list per stage."""
    return [[getattr(self, name) for name in names]
            for names in self._block_names]

  def call(self, images, training=None):
    x = self.stem(images, training=training)
    stage_outputs = []
    for stage in self.stages:
      for block in stage:
        x = block(x, training=training)
      stage_outputs.append(x)
    return {name: stage_outputs[index]
            for name, index in _ENDPOINT_STAGES.items()}

  @property
  def endpoint_strides(self):
    """Spatial stride of each endpoint relative to the input image."""
    return {common.RES2: 4, common.RES3: min(8, self.output_stride),
            common.RES4: min(16, self.output_stride),
            common.RES5: self.output_stride}

  def get_config(self):
    return {'name': self.name, 'trainable': self.trainable, **self._config}
