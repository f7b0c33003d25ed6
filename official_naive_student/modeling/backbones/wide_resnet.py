"""Wide-ResNet-38 and -41: the Naive-Student backbones, with atrous output strides.

WR-38 is model A of Wu et al., "Wider or Deeper: Revisiting the ResNet Model for
Visual Recognition" (Pattern Recognition 2019). WR-41 (Naive-Student, ECCV 2020)
drops WR-38's last block B7, repeats B6 three times and widens B5's first 3x3
conv to 1024 channels; with those widths it is DeepLab2's `wide_resnet41`
(SWideRNet-(1, 1, 1), 109.07M weights) and, with a 1000-way classifier, the
paper's 111M. A 3x3 stride-2 stem (64) is followed by five stages:

  stage  paper  block (channels)                 blocks WR-38 / WR-41  endpoint
  1      B2     3x3 128, 3x3 128                 3 / 3                 -
  2      B3     3x3 256, 3x3 256                 3 / 3                 res2 (/4)
  3      B4     3x3 512, 3x3 512                 6 / 6                 res3 (/8)
  4      B5     3x3 512|1024, 3x3 1024           3 / 3                 res4 (/16)
  5      B6     1x1 512, 3x3 1024, 1x1 2048      1 / 3                 res5 (/32)
         B7     1x1 1024, 3x3 2048, 1x1 4096     1 / 0 (WR-38 only)

Where the resolution halves is the `layout`; weights are the same in both:

* 'naive_student' (default): the network the papers counted, the original
  SWideRNet/WR layout of the authors' TF1 code. B2 runs at stride 2, a 3x3
  stride-2 max pool follows it, and B3, B4 and B5 stride in their *last* block,
  on its *second* 3x3 conv (DeepLab `resnet_v1_beta.lite_bottleneck`). Atrous
  rates follow slim's `stack_blocks_dense`: a de-strided block keeps its input
  rate and the rate doubles after it. Endpoints are the input of each stage's
  strided block, as DeepLab's TF1 decoders tap `block1/unit_2`. This layout
  reproduces all six published multiply-add counts to 0.04%.
* 'deeplab2': DeepLab2 `model/encoder/axial_resnet.py`
  (backbone_type='wider_resnet'), whose `SWideRNet` docstring lists exactly
  these two changes: B3..B6 stride in their first block's first conv (no max
  pool), de-strided blocks use the input rate then the output rate
  (`BlockGroup`), and endpoints are stage outputs. It costs 114B (3.5%) more
  multiply-adds at 1025 x 2049 and 4.2B (8.6%) more at 224 x 224.
"""

from typing import List, Optional, Sequence, Tuple, Union

import keras

from official_naive_student import common
from official_naive_student.modeling.layers import blocks
from official_naive_student.modeling.layers import conv_norm
from official_naive_student.modeling.layers import recompute as recompute_lib

_STEM_CHANNELS = 64
_BASIC = 'basic'
_BOTTLENECK = 'bottleneck'
NAIVE_STUDENT = 'naive_student'
DEEPLAB2 = 'deeplab2'
LAYOUTS = (NAIVE_STUDENT, DEEPLAB2)

# Per stage: (block type, filters) per block.
_ARCHITECTURES = {
    38: (
        [(_BASIC, (128, 128))] * 3,
        [(_BASIC, (256, 256))] * 3,
        [(_BASIC, (512, 512))] * 6,
        [(_BASIC, (512, 1024))] * 3,
        [(_BOTTLENECK, (512, 1024, 2048)), (_BOTTLENECK, (1024, 2048, 4096))],
    ),
    41: (
        [(_BASIC, (128, 128))] * 3,
        [(_BASIC, (256, 256))] * 3,
        [(_BASIC, (512, 512))] * 6,
        [(_BASIC, (1024, 1024))] * 3,
        [(_BOTTLENECK, (512, 1024, 2048))] * 3,
    ),
}
# Endpoints of stages 2..5 (0-based 1..4).
_ENDPOINTS = {1: common.RES2, 2: common.RES3, 3: common.RES4, 4: common.RES5}


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
                ) -> Tuple[list, ...]:
  """Returns [(block type, filters), ...] per stage.

  `num_blocks` (5 ints) overrides the block count of each stage: the stage's
  blocks are truncated, or its last block is repeated.
  """
  specs = _ARCHITECTURES[parse_depth(depth)]
  if num_blocks is None:
    return specs
  if len(num_blocks) != len(specs) or min(num_blocks) < 1:
    raise ValueError(f'num_blocks must be {len(specs)} ints >= 1, '
                     f'got {num_blocks}.')
  return tuple((block_list + [block_list[-1]] * n)[:n]
               for block_list, n in zip(specs, num_blocks))


def _nominal_strides(layout: str, stage_index: int, num_blocks: int):
  """(stride of the max pool before the stage, stride of each block)."""
  strides = [1] * num_blocks
  if stage_index == 0 or (layout == NAIVE_STUDENT and stage_index == 4):
    return 1, strides
  if layout == NAIVE_STUDENT:
    strides[-1] = 2
    return (2 if stage_index == 1 else 1), strides
  strides[0] = 2
  return 1, strides


def block_layout(depth: Union[int, str],
                 output_stride: int = 16,
                 multi_grid: Optional[Sequence[int]] = None,
                 num_blocks: Optional[Sequence[int]] = None,
                 layout: str = NAIVE_STUDENT) -> List[List[dict]]:
  """Plans every block: type, filters, stride, atrous rates and endpoint taps.

  A block strides only while the network is below `output_stride`; beyond it
  the stride becomes atrous rate. With 'deeplab2' the first conv of a
  de-strided block keeps the input rate and the later convs take the output
  rate (DeepLab2 `BlockGroup`, `basic_block_second_conv_atrous_rate`); with
  'naive_student' the whole block keeps the input rate and the rate doubles
  after it (slim `stack_blocks_dense`). Multi-grid multiplies the rates of the
  last stage's blocks.

  Returns:
    One list per stage of dicts with keys kind, filters, strides, rate,
    rate_after (the second conv's rate of a basic block), stride_in_second_conv,
    pool (stride of a max pool before the block, 1 for none), input_stride (the
    non-atrous stride at the block's input, which decides drop path),
    tap_input and tap_output (endpoint names taken at the block's input /
    output, or None).
  """
  if output_stride not in (8, 16, 32):
    raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}.')
  if layout not in LAYOUTS:
    raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}.')
  specs = stage_specs(depth, num_blocks)
  if multi_grid is not None and len(multi_grid) != len(specs[-1]):
    raise ValueError(f'multi_grid {tuple(multi_grid)} needs one rate per block '
                     f'of the last stage ({len(specs[-1])}).')
  plan = []
  nominal = 2  # The stem already halved the input.
  for stage_index, block_list in enumerate(specs):
    last_stage = stage_index == len(specs) - 1
    pool, block_strides = _nominal_strides(layout, stage_index, len(block_list))
    stage = []
    for block_index, ((kind, filters), stride) in enumerate(
        zip(block_list, block_strides)):
      block_pool = pool if block_index == 0 else 1
      nominal *= block_pool  # Never atrous: output_stride >= 8.
      grid = multi_grid[block_index] if last_stage and multi_grid else 1
      strides = stride if nominal < output_stride else 1
      rate = max(1, nominal // output_stride) * grid
      if strides > 1 and grid > 1:
        raise ValueError(f'multi_grid {tuple(multi_grid)}: a strided block '
                         f'cannot be atrous; use multi_grid[0] = 1 at output '
                         f'stride {output_stride}.')
      rate_after = (max(1, nominal * stride // output_stride) * grid
                    if layout == DEEPLAB2 else rate)
      tap = _ENDPOINTS.get(stage_index)
      is_last = block_index == len(block_list) - 1
      stage.append(dict(
          kind=kind, filters=filters, strides=strides, rate=rate,
          rate_after=rate_after,
          stride_in_second_conv=layout == NAIVE_STUDENT and kind == _BASIC,
          pool=block_pool, input_stride=nominal,
          tap_input=(tap if is_last and layout == NAIVE_STUDENT
                     and not last_stage else None),
          tap_output=(tap if is_last and (layout == DEEPLAB2 or last_stage)
                      else None)))
      nominal *= stride
    plan.append(stage)
  return plan


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
    layout: 'naive_student' (the papers' network, default) or 'deeplab2'
      (DeepLab2's re-implementation): where the resolution halves, see the
      module docstring. Both have the same weights.
    zero_init_residual: bool. Start each block's last BN gamma at zero.
    sync_bn: bool. Synchronize batch norm across replicas.
    kernel_initializer: Keras initializer of every convolution kernel.
    recompute: False, True / 'blocks' or 'stages'. Gradient checkpointing:
      keep only the input of every residual block (or of every stage) for the
      backward pass and recompute the rest there, which trades one more
      backbone forward pass for most of the backbone's activation memory
      (benchmarks/MEMORY.md). Same loss and gradients, same drop-path masks and
      batch-norm updates (`layers/recompute.py`). Only acts while a gradient
      tape records.

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
               layout: str = NAIVE_STUDENT,
               zero_init_residual: bool = True,
               sync_bn: bool = True,
               kernel_initializer='he_normal',
               recompute: Union[bool, str] = False,
               **kwargs):
    super().__init__(**kwargs)
    plan = block_layout(depth, output_stride, multi_grid, num_blocks, layout)
    self.recompute = recompute_lib.parse_mode(recompute)
    # === Config ===
    self._config = dict(
        depth=depth, output_stride=output_stride,
        multi_grid=None if multi_grid is None else tuple(multi_grid),
        drop_path_keep_prob=drop_path_keep_prob,
        drop_path_beyond_stride=drop_path_beyond_stride,
        width_multiplier=width_multiplier,
        num_blocks=None if num_blocks is None else tuple(num_blocks),
        layout=layout, zero_init_residual=zero_init_residual, sync_bn=sync_bn,
        kernel_initializer=keras.initializers.serialize(
            keras.initializers.get(kernel_initializer)),
        recompute=recompute)
    self.output_stride = output_stride
    # Each layer deserializes its own initializer object from this config.
    init_config = self._config['kernel_initializer']

    # === Layers ===
    channels = scale_channels(_STEM_CHANNELS, width_multiplier)
    self.stem = conv_norm.ConvNormAct(
        channels, 3, strides=2, sync_bn=sync_bn, kernel_initializer=init_config,
        name='stem')
    self.pool = None
    # Blocks are attributes (`stage3_block2`), not nested lists, because
    # TensorFlow checkpoints only follow attributes of Keras 3 models.
    self._block_names = []
    # Per block, in order: (name, pool before it, endpoint at its input,
    # endpoint at its output).
    self._steps = []
    self.stage_channels = []
    self.endpoint_channels = {}
    for stage_index, stage in enumerate(plan):
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
          block = blocks.BasicBlock(
              second_dilation_rate=spec['rate_after'],
              stride_in_second_conv=spec['stride_in_second_conv'],
              **common_kwargs)
        else:
          block = blocks.BottleneckBlock(**common_kwargs)
        if spec['pool'] > 1:
          self.pool = keras.layers.MaxPooling2D(
              3, strides=spec['pool'], padding='same', name='pool')
        if spec['tap_input']:
          self.endpoint_channels[spec['tap_input']] = channels
        channels = block.out_channels
        if spec['tap_output']:
          self.endpoint_channels[spec['tap_output']] = channels
        setattr(self, name, block)
        stage_names.append(name)
        self._steps.append((name, spec['pool'] > 1, spec['tap_input'],
                            spec['tap_output']))
      self._block_names.append(tuple(stage_names))
      self.stage_channels.append(channels)

  @property
  def stages(self):
    """The residual blocks, as one list per stage."""
    return [[getattr(self, name) for name in names]
            for names in self._block_names]

  def call(self, images, training=None):
    x = self.stem(images, training=training)
    mode = self.recompute if recompute_lib.is_recording() else None
    endpoints = {}
    for stage_names in self._block_names:
      steps = [step for step in self._steps if step[0] in stage_names]
      stage = [getattr(self, name) for name in stage_names]
      if mode == recompute_lib.STAGES and all(b.built for b in stage):
        x, taps = recompute_lib.recompute(
            lambda x, steps=steps: self._run_blocks(steps, x, training),
            stage)(x)
      else:
        x, taps = self._run_blocks(steps, x, training,
                                   recompute=mode == recompute_lib.BLOCKS)
      endpoints.update(taps)
    return endpoints

  def _run_blocks(self, steps, x, training, recompute=False):
    """Runs `steps` (of `_steps`) on x; returns (x, {endpoint: tensor})."""
    taps = {}
    for name, pool, tap_input, tap_output in steps:
      if pool:
        x = self.pool(x)
      if tap_input:
        taps[tap_input] = x
      block = getattr(self, name)
      if recompute and block.built:
        x = recompute_lib.recompute(
            lambda x, block=block: block(x, training=training), [block])(x)
      else:
        x = block(x, training=training)
      if tap_output:
        taps[tap_output] = x
    return x, taps

  @property
  def endpoint_strides(self):
    """Spatial stride of each endpoint relative to the input image."""
    return {common.RES2: 4, common.RES3: min(8, self.output_stride),
            common.RES4: min(16, self.output_stride),
            common.RES5: self.output_stride}

  def get_config(self):
    return {'name': self.name, 'trainable': self.trainable, **self._config}
