"""Parameters and multiply-adds of the built networks, next to the paper's figures.

    python -m official_naive_student.tools.model_stats [--json] [--variants]

Nothing here is typed in: each network is built from `modeling.presets`, its
parameters are counted from its trainable variables (BN gamma and beta included,
moving statistics not, as DeepLab2's `deeplab_test.py` counts), and its
multiply-adds are summed from the op shapes of a traced graph at the paper's
input size (1025 x 2049, or 224 x 224 for the ImageNet classifiers), without
running it.

Counting convention, the one the published figures follow (docs/model_stats.md):
multiply-adds of Conv2D, DepthwiseConv2dNative and MatMul ops only (batch norm,
activations, additions and bilinear resizing are left out), in the graph
TensorFlow really runs. TensorFlow runs an atrous convolution as
SpaceToBatchND -> dense convolution -> BatchToSpaceND, which pads each spatial
axis up to a multiple of the rate, so a rate-r 3x3 convolution on an h x w map
costs 9 * Cin * Cout * ceil(h / r) * r * ceil(w / r) * r. This is why
multi-grid, which changes only atrous rates, changes the count.
"""

import json
import math
import sys
from typing import Callable, Dict, Sequence

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from official_naive_student.modeling import imagenet_classifier
from official_naive_student.modeling import presets

PANOPTIC_INPUT = (1025, 2049)
IMAGENET_INPUT = (224, 224)
# A small input to create the variables eagerly before tracing at full size.
_BUILD_INPUT = (33, 65)
_COUNTED_OPS = ('Conv2D', 'DepthwiseConv2dNative', 'MatMul', 'BatchMatMulV2')
_CALL_OPS = ('PartitionedCall', 'StatefulPartitionedCall', 'While',
             'StatelessWhile', 'If', 'StatelessIf')


def count_params(model: keras.Model) -> int:
  """Number of trainable scalars (kernels, biases, BN gamma and beta)."""
  return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def op_madds(op: tf.Operation) -> int:
  """Multiply-adds of one graph op; 0 for ops that are not counted.

  Conv2D: output elements * kh * kw * Cin. DepthwiseConv2dNative: output
  elements * kh * kw. MatMul / BatchMatMulV2: output elements * inner size.

  Raises:
    ValueError: a counted op without fully known shapes, since its cost would
      silently be wrong.
  """
  if op.type not in _COUNTED_OPS:
    return 0
  out_shape = op.outputs[0].shape
  if not out_shape.is_fully_defined():
    raise ValueError(f'{op.name} ({op.type}): output shape {out_shape} is not '
                     'static; trace with a fully defined input shape.')
  outputs = math.prod(out_shape.as_list())
  if op.type == 'Conv2D':
    kh, kw, cin, _ = op.inputs[1].shape.as_list()
    return outputs * kh * kw * cin
  if op.type == 'DepthwiseConv2dNative':
    kh, kw, _, _ = op.inputs[1].shape.as_list()
    return outputs * kh * kw
  a_shape = op.inputs[0].shape.as_list()
  transpose = op.get_attr('transpose_a' if op.type == 'MatMul' else 'adj_x')
  inner = a_shape[-2] if transpose else a_shape[-1]
  return outputs * inner


def _native_fraction(op: tf.Operation) -> float:
  """Share of an atrous conv's space-to-batch work that is not padding.

  For a convolution between SpaceToBatchND and BatchToSpaceND, the ratio of
  the cropped output's elements to the batched output's elements; 1 otherwise.
  """
  if op.inputs[0].op.type != 'SpaceToBatchND':
    return 1.0
  consumers = [c for c in op.outputs[0].consumers()
               if c.type == 'BatchToSpaceND']
  if len(consumers) != 1:
    return 1.0
  cropped = math.prod(consumers[0].outputs[0].shape.as_list())
  return cropped / math.prod(op.outputs[0].shape.as_list())


def graph_madds(graph: tf.Graph, native_atrous: bool = False) -> int:
  """Sums `op_madds` over a graph.

  Args:
    graph: a traced graph with static shapes.
    native_atrous: count atrous convolutions on the unpadded h x w grid, as a
      dilated-convolution kernel (or an analytic count) would, instead of on
      the space-to-batch grid TensorFlow runs.

  Raises:
    ValueError: the graph calls nested functions or control flow, whose ops
      this flat walk would miss.
  """
  total = 0
  for op in graph.get_operations():
    if op.type in _CALL_OPS:
      raise ValueError(f'{op.name} ({op.type}) hides ops in a nested '
                       'function; counting would be incomplete.')
    madds = op_madds(op)
    if madds and native_atrous:
      madds = int(round(madds * _native_fraction(op)))
    total += madds
  return total


def trace(fn: Callable[[tf.Tensor], object],
          input_shape: Sequence[int]) -> tf.Graph:
  """Graph of `fn` on one float32 input of `input_shape`; nothing is run."""
  concrete = tf.function(fn, autograph=False).get_concrete_function(
      tf.TensorSpec(input_shape, tf.float32))
  return concrete.graph


def count_madds(fn: Callable[[tf.Tensor], object],
                input_shape: Sequence[int],
                native_atrous: bool = False) -> int:
  """Multiply-adds of `fn` on one float32 input of `input_shape`, traced only."""
  return graph_madds(trace(fn, input_shape), native_atrous=native_atrous)


def measure(model: keras.Model, input_hw: Sequence[int]) -> Dict[str, object]:
  """{'params', 'madds', 'madds_native_atrous', 'input'} at batch 1."""
  model(tf.zeros((1,) + tuple(_BUILD_INPUT) + (3,)), training=False)
  graph = trace(lambda x: model(x, training=False),
                (1,) + tuple(input_hw) + (3,))
  return {'params': count_params(model), 'madds': graph_madds(graph),
          'madds_native_atrous': graph_madds(graph, native_atrous=True),
          'input': list(input_hw)}


def build_imagenet(preset: str, **overrides) -> keras.Model:
  """The preset's backbone at output stride 32 with a 1000-way classifier."""
  backbone = presets.build_backbone(preset, output_stride=32, sync_bn=False,
                                    **overrides)
  return imagenet_classifier.ImageNetClassifier(backbone=backbone,
                                                num_classes=1000)


def _panoptic(preset, **overrides):
  return lambda: presets.build_panoptic_deeplab(
      preset, num_classes=19, sync_bn=False, **overrides)


# Multi-grid (DeepLabv3) over the last stage: WR-41 has 3 blocks there, WR-38
# two (B6, B7).
_MULTI_GRID_WR41 = dict(backbone_kwargs=dict(multi_grid=(1, 2, 4)))
_MULTI_GRID_WR38 = dict(backbone_kwargs=dict(multi_grid=(1, 2)))
# DeepLab2's Wide-ResNet layout (strides in first blocks, no max pool) ...
_DEEPLAB2_LAYOUT = dict(backbone_kwargs=dict(layout='deeplab2'))
# ... and its defaults: separable 5x5 convolutions in decoders and heads.
_DEEPLAB2 = dict(decoder_conv_type=presets.SEPARABLE_CONV,
                 head_conv_type=presets.SEPARABLE_CONV, **_DEEPLAB2_LAYOUT)

# name -> (builder, input, key of presets.PAPER_FIGURES and figure to compare).
NETWORKS = {
    'panoptic_deeplab_wr41': (_panoptic('panoptic_deeplab_wr41'),
                              PANOPTIC_INPUT, ('panoptic_deeplab_wr41', 'madds')),
    'panoptic_deeplab_wr38': (_panoptic('panoptic_deeplab_wr38'),
                              PANOPTIC_INPUT, ('panoptic_deeplab_wr38', 'madds')),
    'panoptic_deeplab_x71': (_panoptic('panoptic_deeplab_x71'),
                             PANOPTIC_INPUT, ('panoptic_deeplab_x71', 'madds')),
    'imagenet_wr41': (lambda: build_imagenet('panoptic_deeplab_wr41'),
                      IMAGENET_INPUT, ('imagenet_wr41', 'madds')),
    'imagenet_wr38': (lambda: build_imagenet('panoptic_deeplab_wr38'),
                      IMAGENET_INPUT, ('imagenet_wr38', 'madds')),
}
VARIANTS = {
    'panoptic_deeplab_wr41 +multi-grid': (
        _panoptic('panoptic_deeplab_wr41', **_MULTI_GRID_WR41), PANOPTIC_INPUT,
        ('panoptic_deeplab_wr41', 'madds_multi_grid')),
    'panoptic_deeplab_wr38 +multi-grid': (
        _panoptic('panoptic_deeplab_wr38', **_MULTI_GRID_WR38), PANOPTIC_INPUT,
        ('panoptic_deeplab_wr38', 'madds_multi_grid')),
    'panoptic_deeplab_wr41 DeepLab2 layout': (
        _panoptic('panoptic_deeplab_wr41', **_DEEPLAB2_LAYOUT), PANOPTIC_INPUT,
        ('panoptic_deeplab_wr41', 'madds')),
    'panoptic_deeplab_wr38 DeepLab2 layout': (
        _panoptic('panoptic_deeplab_wr38', **_DEEPLAB2_LAYOUT), PANOPTIC_INPUT,
        ('panoptic_deeplab_wr38', 'madds')),
    'imagenet_wr41 DeepLab2 layout': (
        lambda: build_imagenet('panoptic_deeplab_wr41', **_DEEPLAB2_LAYOUT),
        IMAGENET_INPUT, ('imagenet_wr41', 'madds')),
    'imagenet_wr38 DeepLab2 layout': (
        lambda: build_imagenet('panoptic_deeplab_wr38', **_DEEPLAB2_LAYOUT),
        IMAGENET_INPUT, ('imagenet_wr38', 'madds')),
    'panoptic_deeplab_wr41 DeepLab2 (separable)': (
        _panoptic('panoptic_deeplab_wr41', **_DEEPLAB2), PANOPTIC_INPUT, None),
    'panoptic_deeplab_wr38 DeepLab2 (separable)': (
        _panoptic('panoptic_deeplab_wr38', **_DEEPLAB2), PANOPTIC_INPUT, None),
    'panoptic_deeplab_x71 regular ASPP (DeepLab2)': (
        _panoptic('panoptic_deeplab_x71',
                  aspp_conv_type=presets.STANDARD_CONV), PANOPTIC_INPUT,
        ('panoptic_deeplab_x71', 'madds')),
}


def measure_network(builder) -> Dict[str, object]:
  builder_fn, input_hw, _ = builder
  model = builder_fn()
  stats = measure(model, input_hw)
  del model
  keras.backend.clear_session()
  return stats


def _relative(measured, paper):
  return f'{100.0 * (measured - paper) / paper:+.2f}%'


def format_row(name, stats, paper) -> str:
  params, madds = stats['params'] / 1e6, stats['madds'] / 1e9
  native = stats['madds_native_atrous'] / 1e9
  cells = [f'{name:44s}', f'{stats["input"][0]}x{stats["input"][1]}',
           f'{params:9.2f}M', f'{madds:9.2f}B', f'{native:9.2f}B']
  if paper is not None:
    figures, madds_key = presets.PAPER_FIGURES[paper[0]], paper[1]
    cells += [f'{figures["params"] / 1e6:8.2f}M',
              f'{figures[madds_key] / 1e9:9.2f}B',
              _relative(stats['params'], figures['params']),
              _relative(stats['madds'], figures[madds_key])]
  return '  '.join(cells)


def define_flags():
  """The command's flags, defined only when it runs (importers keep theirs)."""
  flags.DEFINE_bool('json', False, 'Print one JSON object of the five '
                    'paper-comparable networks instead of the table.')
  flags.DEFINE_bool('variants', True, 'Also measure multi-grid and DeepLab2 '
                    '(separable) variants in the table.')


def main(argv):
  del argv
  as_json = flags.FLAGS.json
  networks = dict(NETWORKS)
  if flags.FLAGS.variants and not as_json:
    networks.update(VARIANTS)
  if not as_json:
    print('  '.join(['network'.ljust(44), 'input', 'params'.rjust(10),
                     'M-Adds'.rjust(10), 'native'.rjust(10),
                     'paper'.rjust(9), 'paper'.rjust(10),
                     'd params', 'd M-Adds']))
  results = {}
  for name, builder in networks.items():
    results[name] = measure_network(builder)
    if not as_json:
      print(format_row(name, results[name], builder[2]), flush=True)
  if as_json:
    json.dump({name: {key: stats[key] for key in ('params', 'madds', 'input')}
               for name, stats in results.items()}, sys.stdout, sort_keys=True)
    print()


if __name__ == '__main__':
  define_flags()
  app.run(main)
