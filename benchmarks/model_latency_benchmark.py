r"""CPU forward latency and training-step time of Panoptic-DeepLab, against conv peak.

In one process:
  * this CPU's float32 convolution peak: a few large 3x3 `tf.nn.conv2d` in a
    tf.function (median of `--peak_runs` after a warm-up each), the best
    GFLOP/s of them, measured before and after the networks, here and (unless
    --noother_backend_peak) in a subprocess with oneDNN flipped, since the
    fastest convolution kernels of TF 2.21 on this CPU depend on the shape
    and on TF_ENABLE_ONEDNN_OPTS; the peak is the best of all. The best shape is
    also timed right before every timed forward pass ("paired peak"), so that
    a forward and its peak see the same load on a shared machine;
  * for each network of `--models`: parameters and multiply-adds from
    `tools/model_stats.measure` at the same input size (the graph TensorFlow
    runs, atrous convolutions on their space-to-batch grid; the count on the
    unpadded grid is printed too), then the median of `--runs` forward passes
    (`model(x, training=False)` in a tf.function, after `--warmup` calls) and,
    unless --notrain, the median of `--train_runs` training steps (forward,
    Panoptic-DeepLab loss on synthetic targets, backward, Adam update) after
    one warm-up step;
  * achieved GFLOP/s of each forward (2 * M-Adds / median time) as a fraction
    of the peak: wall-clock against the best peak of the run, wall-clock
    against the paired peak, and CPU seconds (process time, all threads)
    against the paired peak's CPU seconds. The CPU-seconds ratio is the one
    least moved by other processes, but it does not see idle cores (serial
    ops), which only the wall-clock ratio on an idle machine does;
  * with --profile, one more forward pass under the TensorFlow profiler, and
    the op types and model parts that took the most executor time; with
    --conv_shapes=N, the network's N heaviest convolution shapes timed alone.

Networks (`--models`, comma-separated):
  wr41        panoptic_deeplab_wr41 (the Naive-Student student), batch 1 at
              --height x --width (513 x 1025);
  tiny        the demo network (preset 'tiny'), batch 1 at --height x --width;
  tiny_crop   the demo network at the demo crop (--crop, 128 x 256), batch
              --crop_batch (4).
BN is unsynchronized (`sync_bn=False`; one replica, same parameters).

  PYTHONPATH=. python benchmarks/model_latency_benchmark.py \
      [--models=wr41,tiny,tiny_crop] [--runs=3] [--jit_compile] [--notrain] \
      [--profile] [--conv_shapes=12] [--output_json=FILE]
  TF_ENABLE_ONEDNN_OPTS=0 PYTHONPATH=. python benchmarks/...  # Eigen kernels.

Reference on the 2-core project CPU: DeepLab2's WR-41 Panoptic-DeepLab forward
at 513x1025 takes 6.96 s median, about half of the ~373 GFLOP/s conv peak.
"""

import collections
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.dataloaders import targets
from official_naive_student.losses import panoptic_losses
from official_naive_student.modeling import presets
from official_naive_student.tools import model_stats

_MODELS = flags.DEFINE_list('models', ['wr41', 'tiny', 'tiny_crop'],
                            'Networks to time: wr41, tiny, tiny_crop.')
_HEIGHT = flags.DEFINE_integer('height', 513, 'Input height (wr41, tiny).')
_WIDTH = flags.DEFINE_integer('width', 1025, 'Input width (wr41, tiny).')
_CROP = flags.DEFINE_list('crop', ['128', '256'], 'tiny_crop height, width.')
_CROP_BATCH = flags.DEFINE_integer('crop_batch', 4, 'tiny_crop batch size.')
_RUNS = flags.DEFINE_integer('runs', 3, 'Timed forward passes.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed forward passes (the '
                               'first traces).')
_TRAIN = flags.DEFINE_bool('train', True, 'Also time training steps.')
_TRAIN_RUNS = flags.DEFINE_integer('train_runs', 2, 'Timed training steps '
                                   '(after one untimed).')
_JIT = flags.DEFINE_bool('jit_compile', False, 'XLA-compile forward and '
                         'training step.')
_PEAK_RUNS = flags.DEFINE_integer('peak_runs', 5, 'Timed calls per conv shape.')
_PROFILE = flags.DEFINE_bool('profile', False, 'Profile one more forward pass '
                             'per network and print the top op types.')
_CONV_SHAPES = flags.DEFINE_integer(
    'conv_shapes', 0, 'Also time, in isolation, the N convolution shapes of '
    'each network with the most multiply-adds (diagnostic).')
_OTHER_PEAK = flags.DEFINE_bool(
    'other_backend_peak', True, 'Also measure the conv peak in a subprocess '
    'with oneDNN flipped (TF_ENABLE_ONEDNN_OPTS), before and after the '
    'networks; the peak is the best of both.')
_PEAK_ONLY = flags.DEFINE_bool('peak_only', False, 'Print the conv peak as '
                               'JSON and exit (used by --other_backend_peak).')
_JSON = flags.DEFINE_string('output_json', None, 'Also write the results here.')

# (batch, height, width, in channels, out channels, kernel) of the peak probes.
PEAK_SHAPES = ((1, 129, 257, 256, 256, 3), (1, 65, 129, 512, 512, 3),
               (1, 129, 257, 512, 512, 3), (1, 257, 513, 128, 128, 3))


def _timed(fn):
  """(wall seconds, CPU seconds of this process, all threads) of fn()."""
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


class ConvProbe:
  """A 3x3 float32 convolution ('SAME', stride 1) in a tf.function."""

  def __init__(self, shape):
    b, h, w, cin, cout, k = shape
    rng = np.random.default_rng(0)
    self.name = f'{b}x{h}x{w} {cin}->{cout} {k}x{k}'
    self.flops = 2.0 * b * h * w * cout * k * k * cin
    self._x = tf.constant(rng.standard_normal((b, h, w, cin), np.float32))
    self._f = tf.constant(
        rng.standard_normal((k, k, cin, cout), np.float32) * 0.05)
    self._conv = tf.function(lambda x, f: tf.nn.conv2d(x, f, 1, 'SAME'))
    self()  # Traces.

  def __call__(self):
    return _timed(lambda: self._conv(self._x, self._f).numpy())

  def gflops(self, runs):
    """(wall, CPU) GFLOP/s of the median call of `runs`."""
    times = [self() for _ in range(runs)]
    wall = statistics.median(t[0] for t in times)
    cpu = statistics.median(t[1] for t in times)
    return self.flops / wall / 1e9, self.flops / cpu / 1e9


def conv_peak(probes, runs):
  """{probe name: wall GFLOP/s}."""
  return {probe.name: probe.gflops(runs)[0] for probe in probes}


def onednn_setting():
  """'on' or 'off': TF_ENABLE_ONEDNN_OPTS as TensorFlow 2.21 on x86 reads it."""
  return 'off' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0' else 'on'


def other_backend_peak(runs):
  """{probe: GFLOP/s} measured in a subprocess with oneDNN flipped."""
  flipped = '1' if onednn_setting() == 'off' else '0'
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=flipped,
             PYTHONPATH=os.pathsep.join(
                 [repo] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  out = subprocess.run([sys.executable, os.path.abspath(__file__),
                        '--peak_only', f'--peak_runs={runs}'], env=env,
                       check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def synthetic_labels(batch, height, width, seed=0):
  """Panoptic-DeepLab targets of a street-like synthetic panoptic map."""
  info = datasets.CITYSCAPES
  rng = np.random.default_rng(seed)
  examples = []
  for _ in range(batch):
    panoptic = np.zeros((height, width), np.int32)  # road
    panoptic[:height // 3] = 10 * info.label_divisor  # sky
    for i in range(20):
      h = int(rng.integers(8, max(9, height // 4)))
      w = int(rng.integers(8, max(9, width // 5)))
      y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
      thing = int(rng.choice(info.thing_train_ids))
      panoptic[y:y + h, x:x + w] = thing * info.label_divisor + i + 1
    examples.append(targets.encode_targets(
        tf.constant(panoptic), info.thing_train_ids, info.label_divisor,
        info.ignore_label))
  return {k: tf.stack([e[k] for e in examples]) for k in examples[0]
          if k != common.GT_PANOPTIC}


def _scope(name):
  """'wr41_1/wide_res_net_1/stage3_block2_1/conv1_1/...' -> 'wide_res_net/stage3'.

  Numeric suffixes are dropped, backbone blocks are grouped by stage, other
  parts by their first sub-layer ('semantic_decoder/aspp').
  """
  parts = [re.sub(r'_\d+$', '', p) for p in name.split('/')]
  if len(parts) < 3:
    return '/'.join(parts[1:]) or parts[0]
  return parts[1] + '/' + parts[2].split('_block')[0]


def profile_forward(fn, graph, top=12):
  """Executor time of one call of fn under the profiler, by op type and scope.

  Returns ({'op_types': [(type, ms, share)], 'scopes': [(scope, ms, conv ms,
  GMAdds, GFLOP/s of its convolutions)], 'total_ms'}). Times are summed over
  executor threads (op kernels may overlap); M-Adds per scope come from
  `graph` (model_stats' trace of the same network).
  """
  # pylint: disable=g-import-not-at-top
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  logdir = tempfile.mkdtemp(prefix='model_latency_profile_')
  tf.profiler.experimental.start(logdir)
  fn()
  tf.profiler.experimental.stop()
  space = xplane_pb2.XSpace()
  with open(sorted(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'),
                             recursive=True))[-1], 'rb') as f:
    space.ParseFromString(f.read())
  shutil.rmtree(logdir, ignore_errors=True)
  by_type, by_scope, conv_by_scope = (collections.Counter(),
                                      collections.Counter(),
                                      collections.Counter())
  for plane in space.planes:
    for line in plane.lines:
      if not line.name.startswith('tf_Compute'):
        continue
      for event in line.events:
        meta = plane.event_metadata[event.metadata_id]
        if ':' not in meta.name or not meta.display_name:
          continue  # Not an op kernel ("node:OpType").
        ms = event.duration_ps / 1e9
        scope = _scope(meta.name.split(':')[0])
        by_type[meta.display_name] += ms
        by_scope[scope] += ms
        if 'Conv2D' in meta.display_name or 'Depthwise' in meta.display_name:
          conv_by_scope[scope] += ms
  madds = collections.Counter()
  for op in graph.get_operations():
    madds[_scope(op.name)] += model_stats.op_madds(op)
  total = sum(by_type.values())
  scopes = [(scope, ms, conv_by_scope[scope], madds[scope] / 1e9,
             2 * madds[scope] / conv_by_scope[scope] / 1e6
             if conv_by_scope[scope] else 0.0)
            for scope, ms in by_scope.most_common(top)]
  return dict(op_types=[(op, ms, ms / total)
                        for op, ms in by_type.most_common(top)],
              scopes=scopes, total_ms=total)


def conv_shapes(graph):
  """[(key, count, madds)] of the Conv2D ops in graph, most M-Adds first."""
  count, madds = collections.Counter(), collections.Counter()
  for op in graph.get_operations():
    if op.type != 'Conv2D':
      continue
    key = (tuple(op.inputs[0].shape.as_list()),
           tuple(op.inputs[1].shape.as_list()),
           tuple(op.get_attr('strides')),
           op.get_attr('padding').decode())
    count[key] += 1
    madds[key] += model_stats.op_madds(op)
  return [(key, count[key], m) for key, m in madds.most_common()]


def time_conv_shapes(graph, top, runs=3):
  """Isolated tf.nn.conv2d timing of the `top` heaviest conv shapes of graph.

  Returns rows (shape, count, GMAdds, wall GFLOP/s, CPU GFLOP/s) and the
  total M-Adds of all shapes, and of the timed ones.
  """
  rng = np.random.default_rng(0)
  shapes = conv_shapes(graph)
  rows = []
  for (x_shape, f_shape, strides, padding), count, madds in shapes[:top]:
    x = tf.constant(rng.standard_normal(x_shape, np.float32))
    f = tf.constant(rng.standard_normal(f_shape, np.float32) * 0.05)
    conv = tf.function(lambda x, f, s=strides, p=padding:
                       tf.nn.conv2d(x, f, s, p))
    conv(x, f).numpy()
    times = [_timed(lambda: conv(x, f).numpy()) for _ in range(runs)]
    one = madds / count
    rows.append((f'{"x".join(map(str, x_shape))} {f_shape[0]}x{f_shape[1]} '
                 f'{f_shape[2]}->{f_shape[3]} s{strides[1]}', count,
                 madds / 1e9,
                 2 * one / statistics.median(t[0] for t in times) / 1e9,
                 2 * one / statistics.median(t[1] for t in times) / 1e9))
  return rows, sum(s[2] for s in shapes), sum(s[2] for s in shapes[:top])


def time_network(name, preset, batch, height, width, probe):
  """Stats and timings of one network at [batch, height, width, 3]."""
  keras.backend.clear_session()
  model = presets.build_panoptic_deeplab(preset, num_classes=19, sync_bn=False)
  stats = model_stats.measure(model, (height, width))  # Also builds the model.
  flops = 2.0 * batch * stats['madds']
  row = dict(name=name, preset=preset, batch=batch, input=[height, width],
             params=stats['params'], madds_per_image=stats['madds'],
             madds_native_atrous_per_image=stats['madds_native_atrous'])
  images = tf.random.stateless_uniform((batch, height, width, 3), (1, 2),
                                       maxval=255.0)
  forward = tf.function(lambda x: model(x, training=False),
                        jit_compile=_JIT.value)
  run = lambda: forward(images)[common.PRED_SEMANTIC_LOGITS].numpy()
  row['forward_first_call_s'] = _timed(run)[0]
  for _ in range(_WARMUP.value - 1):
    run()
  pairs = []
  for _ in range(_RUNS.value):
    peak = probe()
    pairs.append((peak, _timed(run)))
  wall = statistics.median(p[1][0] for p in pairs)
  cpu = statistics.median(p[1][1] for p in pairs)
  peak_wall = statistics.median(p[0][0] for p in pairs)
  peak_cpu = statistics.median(p[0][1] for p in pairs)
  row.update(
      forward_s=wall, forward_cpu_s=cpu,
      forward_runs_s=[p[1][0] for p in pairs],
      forward_gflops=flops / wall / 1e9, forward_gflops_cpu=flops / cpu / 1e9,
      paired_peak_gflops=probe.flops / peak_wall / 1e9,
      paired_peak_gflops_cpu=probe.flops / peak_cpu / 1e9)
  row['fraction_of_paired_peak'] = (row['forward_gflops']
                                    / row['paired_peak_gflops'])
  row['fraction_of_paired_peak_cpu'] = (row['forward_gflops_cpu']
                                        / row['paired_peak_gflops_cpu'])
  print(f'{name} {batch}x{height}x{width}: forward median {wall:.3f} s '
        f'({row["forward_gflops"]:.1f} GFLOP/s; paired peak '
        f'{row["paired_peak_gflops"]:.1f} -> '
        f'{100 * row["fraction_of_paired_peak"]:.1f} %; CPU-seconds '
        f'{100 * row["fraction_of_paired_peak_cpu"]:.1f} %), load '
        f'{os.getloadavg()[0]:.2f}', flush=True)
  if _PROFILE.value:
    graph = model_stats.trace(lambda x: model(x, training=False),
                              (batch, height, width, 3))
    prof = profile_forward(run, graph)
    row['profile'] = prof
    print(f'{name}: executor time by op type (sum {prof["total_ms"]:.0f} ms '
          'over threads):')
    for op, ms, share in prof['op_types']:
      print(f'  {op:<28}{ms:10.1f} ms{100 * share:7.1f} %')
    print(f'{name}: by scope: {"all ops ms":>12}{"conv ms":>10}{"GMAdds":>9}'
          f'{"conv GFLOP/s":>14}')
    for scope, ms, conv_ms, gmadds, gflops in prof['scopes']:
      print(f'  {scope:<34}{ms:10.1f}{conv_ms:10.1f}{gmadds:9.1f}'
            f'{gflops:14.1f}')
  if _CONV_SHAPES.value:
    graph = model_stats.trace(lambda x: model(x, training=False),
                              (batch, height, width, 3))
    shapes, all_madds, timed_madds = time_conv_shapes(graph, _CONV_SHAPES.value)
    row['conv_shapes'] = shapes
    floor_wall = sum(2 * m * 1e9 / (g * 1e9) for _, _, m, g, _ in shapes)
    floor_cpu = sum(2 * m * 1e9 / (g * 1e9) for _, _, m, _, g in shapes)
    print(f'{name}: its {len(shapes)} heaviest conv shapes in isolation '
          f'({100 * timed_madds / all_madds:.0f} % of its conv M-Adds; wall '
          f'sum {floor_wall:.2f} s, CPU sum {floor_cpu:.2f} s):')
    print(f'  {"input / kernel":<40}{"count":>6}{"GMAdds":>9}'
          f'{"GFLOP/s":>9}{"CPU GF/s":>9}')
    for shape, count, gmadds, gflops, gflops_cpu in shapes:
      print(f'  {shape:<40}{count:6d}{gmadds:9.1f}{gflops:9.1f}'
            f'{gflops_cpu:9.1f}')
  if _TRAIN.value:
    labels = synthetic_labels(batch, height, width)
    loss_fn = panoptic_losses.PanopticLoss(ignore_label=255)
    optimizer = keras.optimizers.Adam(learning_rate=1e-5)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=_JIT.value)
    def train_step(images, labels):
      with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=True))[common.LOSS_TOTAL]
      grads = tape.gradient(loss, variables)
      optimizer.apply_gradients(zip(grads, variables))
      return loss

    step = lambda: float(train_step(images, labels))
    row['train_first_call_s'] = _timed(step)[0]
    times = [_timed(step) for _ in range(_TRAIN_RUNS.value)]
    row['train_step_s'] = statistics.median(t[0] for t in times)
    row['train_step_cpu_s'] = statistics.median(t[1] for t in times)
    row['train_runs_s'] = [t[0] for t in times]
    print(f'{name} {batch}x{height}x{width}: train step median '
          f'{row["train_step_s"]:.3f} s, load {os.getloadavg()[0]:.2f}',
          flush=True)
  del model
  return row


def main(argv):
  del argv
  configs = {'wr41': ('panoptic_deeplab_wr41', 1, _HEIGHT.value, _WIDTH.value),
             'tiny': ('tiny', 1, _HEIGHT.value, _WIDTH.value),
             'tiny_crop': ('tiny', _CROP_BATCH.value, int(_CROP.value[0]),
                           int(_CROP.value[1]))}
  unknown = set(_MODELS.value) - set(configs)
  if unknown:
    raise app.UsageError(f'Unknown --models {sorted(unknown)}')
  probes = [ConvProbe(shape) for shape in PEAK_SHAPES]
  if _PEAK_ONLY.value:
    print(json.dumps(conv_peak(probes, _PEAK_RUNS.value)))
    return
  print(f'TF {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} '
        f'CPUs, oneDNN {onednn_setting()}, jit_compile={_JIT.value}, load '
        f'{os.getloadavg()}', flush=True)
  other = f'oneDNN {"on" if onednn_setting() == "off" else "off"}'
  other_peaks = []
  if _OTHER_PEAK.value:
    other_peaks.append(other_backend_peak(_PEAK_RUNS.value))
    print(f'conv peak ({other}, before): ' + ', '.join(
        f'{k}: {v:.1f}' for k, v in other_peaks[-1].items()) + ' GFLOP/s',
          flush=True)
  peak_before = conv_peak(probes, _PEAK_RUNS.value)
  print('conv peak (before): ' + ', '.join(
      f'{k}: {v:.1f}' for k, v in peak_before.items()) + ' GFLOP/s', flush=True)
  best = max(probes, key=lambda p: peak_before[p.name])
  rows = [time_network(name, *configs[name], probe=best)
          for name in _MODELS.value]
  peak_after = conv_peak(probes, _PEAK_RUNS.value)
  print('conv peak (after): ' + ', '.join(
      f'{k}: {v:.1f}' for k, v in peak_after.items()) + ' GFLOP/s', flush=True)
  if _OTHER_PEAK.value:
    other_peaks.append(other_backend_peak(_PEAK_RUNS.value))
    print(f'conv peak ({other}, after): ' + ', '.join(
        f'{k}: {v:.1f}' for k, v in other_peaks[-1].items()) + ' GFLOP/s',
          flush=True)
  own_peak = max(list(peak_before.values()) + list(peak_after.values()))
  other_peak = max([v for p in other_peaks for v in p.values()], default=0.0)
  peak = max(own_peak, other_peak)

  print(f'\nconv peak {peak:.1f} GFLOP/s (this process, oneDNN '
        f'{onednn_setting()}: {own_peak:.1f}; {other}: {other_peak:.1f}); '
        f'paired probe: {best.name}; load {os.getloadavg()}')
  print(f'{"network":<10}{"input":>12}{"params":>9}{"GMAdds":>8}'
        f'{"fwd s":>8}{"GFLOP/s":>8}{"%peak":>7}{"%paired":>8}{"%pairCPU":>9}'
        f'{"train s":>9}')
  for row in rows:
    row['fraction_of_peak'] = row['forward_gflops'] / peak
    shape = f'{row["batch"]}x{row["input"][0]}x{row["input"][1]}'
    train = (f'{row["train_step_s"]:9.3f}' if 'train_step_s' in row
             else f'{"n/a":>9}')
    print(f'{row["name"]:<10}{shape:>12}{row["params"] / 1e6:8.2f}M'
          f'{row["batch"] * row["madds_per_image"] / 1e9:8.1f}'
          f'{row["forward_s"]:8.3f}{row["forward_gflops"]:8.1f}'
          f'{100 * row["fraction_of_peak"]:6.1f}%'
          f'{100 * row["fraction_of_paired_peak"]:7.1f}%'
          f'{100 * row["fraction_of_paired_peak_cpu"]:8.1f}%{train}')
  result = dict(tf=tf.__version__, cpus=os.cpu_count(), jit_compile=_JIT.value,
                onednn=onednn_setting(), conv_peak_gflops=peak,
                conv_peak_before=peak_before, conv_peak_after=peak_after,
                conv_peak_other_backend=other_peaks, paired_probe=best.name,
                networks=rows)
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
