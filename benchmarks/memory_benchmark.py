r"""Peak memory of a full-size WR-41 training step and of whole-image inference.

Every configuration runs in a fresh subprocess, so each peak is its own. In the
child: the network (`panoptic_deeplab_wr41`, 19 classes, unsynchronized BN: one
replica) is built on a small input, the resident set size is read (`build`),
then for training the Adam slots and the synthetic labels are made; the peak
RSS (VmHWM of /proc/self/status) is reset, and one training step (forward,
Panoptic-DeepLab loss, backward, Adam update; batch 1, i.e. one replica's
share) or one inference pass (`model(x, training=False)`, batch 1) runs in a
tf.function, first call included (tracing and graph optimization are part of
what a job pays). Reported, in GiB: the peak RSS, the RSS after building, and
peak minus build: the memory the step itself needs (activations, gradients
and, for training, the Adam slots: 2 x the weights, 1.10 GiB for WR-41). For
training rows below 1025 x 2049, the table also extrapolates the peak to that
size as build + (area ratio) x (peak - build): an upper bound, since the Adam
slots and gradients in (peak - build) do not grow with the crop.

Configurations (`--configs`, comma-separated; default all but *_full and
infer_bf16_tiled):
  train_fp32, train_bf16          training step at --train_size (513 x 1025)
                                  in float32 / mixed_bfloat16;
  train_recompute_blocks          float32 with backbone `recompute='blocks'`
  train_recompute_stages          ... 'stages';
  train_bf16_recompute_blocks     mixed_bfloat16 with 'blocks';
  train_fp32_full, ...            the same at 1025 x 2049 (--full_size);
  infer_fp32, infer_bf16          inference at --infer_size (1025 x 2049),
                                  output stride 16;
  infer_fp32_os32                 float32 at output stride 32 (same weights);
  infer_fp32_tiled, infer_bf16_tiled
                                  `TiledInference` with --tile_size (513 x
                                  1025, so 2 x 2 tiles) at output stride 16.

This is CPU memory (TensorFlow's CPU executor, oneDNN kernels and scratch
buffers), not GPU memory: on a GPU the BFC allocator, cuDNN workspaces and
XLA change the absolute numbers; compare the configurations with each other.
The parent also polls each child's RSS and stops it above --max_rss_gb (GiB).

  PYTHONPATH=. python benchmarks/memory_benchmark.py \
      [--configs=train_fp32,infer_fp32] [--output_json=/tmp/memory.json]
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

_CONFIGS = flags.DEFINE_list(
    'configs',
    ['train_fp32', 'train_bf16', 'train_recompute_blocks',
     'train_recompute_stages', 'train_bf16_recompute_blocks', 'infer_fp32',
     'infer_bf16', 'infer_fp32_os32', 'infer_fp32_tiled'],
    'Configurations to measure, see the module docstring.')
_TRAIN_SIZE = flags.DEFINE_list('train_size', ['513', '1025'],
                                'Training crop height, width.')
_FULL_SIZE = flags.DEFINE_list('full_size', ['1025', '2049'],
                               'Crop of the *_full training configurations.')
_INFER_SIZE = flags.DEFINE_list('infer_size', ['1025', '2049'],
                                'Inference image height, width.')
_TILE_SIZE = flags.DEFINE_list('tile_size', ['513', '1025'],
                               'Tile height, width of the *_tiled configs.')
_TIMEOUT = flags.DEFINE_integer('timeout', 420, 'Seconds per configuration.')
_MAX_RSS_GB = flags.DEFINE_float('max_rss_gb', 14.0,
                                 'Stop a configuration above this RSS.')
_JSON = flags.DEFINE_string('output_json', None, 'Also write the results here.')
_RUN_ONE = flags.DEFINE_string('run_one', None,
                               'Internal: measure one configuration and print '
                               'its JSON (the parent calls this).')

# name -> (mode, precision, backbone recompute, output stride, tiled, size flag)
CONFIGS = {
    'train_fp32': ('train', 'float32', None, 16, False, 'train'),
    'train_bf16': ('train', 'mixed_bfloat16', None, 16, False, 'train'),
    'train_recompute_blocks': ('train', 'float32', 'blocks', 16, False,
                               'train'),
    'train_recompute_stages': ('train', 'float32', 'stages', 16, False,
                               'train'),
    'train_bf16_recompute_blocks': ('train', 'mixed_bfloat16', 'blocks', 16,
                                    False, 'train'),
    'train_fp32_full': ('train', 'float32', None, 16, False, 'full'),
    'train_bf16_full': ('train', 'mixed_bfloat16', None, 16, False, 'full'),
    'train_recompute_blocks_full': ('train', 'float32', 'blocks', 16, False,
                                    'full'),
    'infer_fp32': ('infer', 'float32', None, 16, False, 'infer'),
    'infer_bf16': ('infer', 'mixed_bfloat16', None, 16, False, 'infer'),
    'infer_fp32_os32': ('infer', 'float32', None, 32, False, 'infer'),
    'infer_fp32_tiled': ('infer', 'float32', None, 16, True, 'infer'),
    'infer_bf16_tiled': ('infer', 'mixed_bfloat16', None, 16, True, 'infer'),
}

_GB = 1024.0 ** 3


def _status_kb(key, pid='self'):
  with open(f'/proc/{pid}/status') as f:
    match = re.search(rf'^{key}:\s+(\d+) kB', f.read(), re.MULTILINE)
  return int(match.group(1)) if match else 0


def _reset_peak():
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where it cannot."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _size(which):
  flag = {'train': _TRAIN_SIZE, 'full': _FULL_SIZE, 'infer': _INFER_SIZE}[which]
  return int(flag.value[0]), int(flag.value[1])


def _synthetic_labels(height, width):
  """Panoptic-DeepLab targets of the right shapes and dtypes (values random)."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from official_naive_student import common
  shape = (1, height, width)
  return {
      common.GT_SEMANTIC: tf.random.stateless_uniform(
          shape, (0, 1), maxval=19, dtype=tf.int32),
      common.GT_SEMANTIC_WEIGHTS: tf.ones(shape),
      common.GT_CENTER_HEATMAP: tf.random.stateless_uniform(
          shape + (1,), (0, 2)),
      common.GT_CENTER_WEIGHTS: tf.ones(shape),
      common.GT_OFFSET: tf.random.stateless_normal(shape + (2,), (0, 3)) * 50,
      common.GT_OFFSET_WEIGHTS: tf.ones(shape),
  }


def run_one(name):
  """Measures configuration `name` in this process; returns its row."""
  # pylint: disable=g-import-not-at-top
  import keras
  import tensorflow as tf
  from official_naive_student import common
  from official_naive_student.losses import panoptic_losses
  from official_naive_student.modeling import presets
  from official_naive_student.modeling import tiled_inference

  mode, precision, recompute, output_stride, tiled, size_flag = CONFIGS[name]
  height, width = _size(size_flag)
  keras.mixed_precision.set_global_policy(precision)
  backbone_kwargs = {'recompute': recompute} if recompute else {}
  model = presets.build_panoptic_deeplab(
      'panoptic_deeplab_wr41', num_classes=19, sync_bn=False,
      output_stride=output_stride, backbone_kwargs=backbone_kwargs)
  model(tf.zeros((1, 65, 129, 3)), training=False)  # Builds on a small input.
  rss_build = _status_kb('VmRSS')
  images = tf.random.stateless_uniform((1, height, width, 3), (1, 2),
                                       maxval=255.0)
  row = dict(name=name, mode=mode, precision=precision, recompute=recompute,
             output_stride=output_stride, input=[height, width],
             params=int(sum(v.numpy().size for v in model.trainable_variables)))
  if mode == 'train':
    loss_fn = panoptic_losses.PanopticLoss()
    optimizer = keras.optimizers.Adam(learning_rate=1e-5)
    variables = model.trainable_variables
    optimizer.build(variables)
    labels = _synthetic_labels(height, width)

    @tf.function
    def step(images, labels):
      with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        loss = tf.cast(loss_fn(labels, outputs)[common.LOSS_TOTAL], tf.float32)
      grads = tape.gradient(loss, variables)
      optimizer.apply_gradients(zip(grads, variables))
      return loss

    run = lambda: float(step(images, labels))
  else:
    model_fn = lambda x: model(x, training=False)
    if tiled:
      tiler = tiled_inference.TiledInference(
          tile_size=[int(t) for t in _TILE_SIZE.value], align=output_stride)
      row['tiles'] = tiler.tiles(height, width)
      forward = tf.function(lambda x: tiler(model_fn, x))
    else:
      forward = tf.function(model_fn)
    run = lambda: float(tf.reduce_sum(
        forward(images)[common.PRED_SEMANTIC_LOGITS][0, 0, 0]))
  rss_ready = _status_kb('VmRSS')
  row['peak_reset'] = _reset_peak()
  row['load'] = os.getloadavg()[0]
  began, cpu = time.monotonic(), time.process_time()
  row['value'] = run()
  row['seconds'] = time.monotonic() - began
  row['cpu_seconds'] = time.process_time() - cpu  # All threads.
  row.update(rss_build_gb=rss_build * 1024 / _GB,
             rss_ready_gb=rss_ready * 1024 / _GB,
             peak_gb=_status_kb('VmHWM') * 1024 / _GB)
  row['peak_minus_build_gb'] = row['peak_gb'] - row['rss_build_gb']
  return row


def _measure_in_subprocess(name):
  """Runs `--run_one=name` in a child, polling its RSS; returns its row."""
  argv = [sys.executable, os.path.abspath(__file__), f'--run_one={name}',
          f'--train_size={",".join(_TRAIN_SIZE.value)}',
          f'--full_size={",".join(_FULL_SIZE.value)}',
          f'--infer_size={",".join(_INFER_SIZE.value)}',
          f'--tile_size={",".join(_TILE_SIZE.value)}']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (root, env.get('PYTHONPATH')) if p)
  child = subprocess.Popen(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
  polled = {'peak_kb': 0, 'killed': None}

  def poll():
    limit_kb = _MAX_RSS_GB.value * _GB / 1024
    began = time.monotonic()
    while child.poll() is None:
      try:
        rss = _status_kb('VmRSS', child.pid)
      except OSError:
        break
      polled['peak_kb'] = max(polled['peak_kb'], rss)
      if rss > limit_kb or time.monotonic() - began > _TIMEOUT.value:
        polled['killed'] = ('rss' if rss > limit_kb else 'timeout')
        child.kill()
        break
      time.sleep(0.2)

  watcher = threading.Thread(target=poll, daemon=True)
  began = time.monotonic()
  watcher.start()
  stdout, stderr = child.communicate()
  watcher.join()
  wall = time.monotonic() - began
  lines = [l for l in stdout.splitlines() if l.startswith('{')]
  if child.returncode != 0 or not lines:
    reason = polled['killed'] or f'exit {child.returncode}'
    tail = stderr.strip().splitlines()[-3:]
    return dict(name=name, error=reason, detail=tail, wall_s=wall,
                polled_peak_gb=polled['peak_kb'] * 1024 / _GB)
  row = json.loads(lines[-1])
  row['wall_s'] = wall
  row['polled_peak_gb'] = polled['peak_kb'] * 1024 / _GB
  return row


def _extrapolated_gb(row, height, width):
  """Peak at height x width if peak - build grew with the area (an upper
  bound: the Adam slots and gradients in it do not grow)."""
  ratio = height * width / (row['input'][0] * row['input'][1])
  return row['rss_build_gb'] + ratio * row['peak_minus_build_gb']


def _table(rows):
  full = tuple(int(v) for v in _FULL_SIZE.value)
  lines = ['| configuration | input | precision | recompute | OS | peak RSS '
           '(GiB) | RSS after build (GiB) | RSS with Adam slots, inputs '
           '(GiB) | peak - build (GiB) | '
           f'extrapolated peak at {full[0]}x{full[1]} (GiB) | first step, '
           'wall / CPU (s) |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    if 'error' in r:
      lines.append(f'| {r["name"]} | failed: {r["error"]} (polled peak '
                   f'{r["polled_peak_gb"]:.2f} GiB) | | | | | | | | | |')
      continue
    what = r['mode'] + (f', {len(r["tiles"])} tiles' if 'tiles' in r else '')
    extrapolated = ''
    slots = (f'{r["rss_ready_gb"]:.2f}' if r['mode'] == 'train' else '-')
    if r['mode'] == 'train' and tuple(r['input']) != full:
      extrapolated = f'{_extrapolated_gb(r, *full):.1f}'
    lines.append(
        f'| {r["name"]} ({what}) | {r["input"][0]}x{r["input"][1]} | '
        f'{r["precision"]} | {r["recompute"] or "-"} | {r["output_stride"]} | '
        f'{r["peak_gb"]:.2f} | {r["rss_build_gb"]:.2f} | '
        f'{slots} | {r["peak_minus_build_gb"]:.2f} | {extrapolated} | '
        f'{r["seconds"]:.0f} / {r["cpu_seconds"]:.0f} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  if _RUN_ONE.value:
    print(json.dumps(run_one(_RUN_ONE.value)), flush=True)
    return
  unknown = set(_CONFIGS.value) - set(CONFIGS)
  if unknown:
    raise app.UsageError(f'Unknown --configs {sorted(unknown)}; known: '
                         f'{sorted(CONFIGS)}')
  print(f'{os.cpu_count()} CPUs, load {os.getloadavg()}', flush=True)
  rows = []
  for name in _CONFIGS.value:
    row = _measure_in_subprocess(name)
    rows.append(row)
    print(json.dumps(row), flush=True)
  print(_table(rows))
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(dict(load=os.getloadavg(), rows=rows), f, indent=1)


if __name__ == '__main__':
  app.run(main)
