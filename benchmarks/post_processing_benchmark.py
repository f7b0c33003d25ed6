r"""Latency of Panoptic-DeepLab post-processing at Cityscapes full resolution.

Builds synthetic raw outputs (19 classes, ~50 Gaussian instance centers with
consistent offsets) at 1025x2049, warms up a tf.function and reports the median of
N timed runs. Reference on the 2-core project CPU: DeepLab2's pure-TF
post-processor takes 1.13 s median.

  PYTHONPATH=. python benchmarks/post_processing_benchmark.py --runs=10 \
      [--jit_compile]
"""

import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.post_processing import panoptic

_HEIGHT = flags.DEFINE_integer('height', 1025, 'Image height.')
_WIDTH = flags.DEFINE_integer('width', 2049, 'Image width.')
_NUM_CENTERS = flags.DEFINE_integer('num_centers', 50, 'Instances drawn.')
_RUNS = flags.DEFINE_integer('runs', 10, 'Timed runs after two warm-ups.')
_JIT = flags.DEFINE_bool('jit_compile', False, 'Compile with XLA.')


def make_raw_outputs(height, width, num_classes, num_centers, thing_ids,
                     seed=0):
  """Synthetic [1, H, W, *] logits, heatmap and offsets, Cityscapes-like.

  `num_centers` round instances (radius 20-80 px, a thing class each, ~15 % of
  the pixels as in Cityscapes) on three horizontal stuff bands; logits are the
  intended class + 3 plus N(0, 1) noise; Gaussian center blobs (sigma 8) and
  offsets to the nearest center with N(0, 1) px noise.
  """
  rng = np.random.default_rng(seed)
  cy = rng.integers(0, height, num_centers)
  cx = rng.integers(0, width, num_centers)
  radius = rng.uniform(20, 80, num_centers)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  heat = np.zeros((height, width), np.float32)
  nearest = np.zeros((height, width), np.int64)
  best = np.full((height, width), np.inf, np.float32)
  for k in range(num_centers):
    d = (yy - cy[k])**2 + (xx - cx[k])**2
    heat = np.maximum(heat, np.exp(-d / (2 * 8.0**2)))
    closer = d < best
    best[closer] = d[closer]
    nearest[closer] = k
  offsets = np.stack([cy[nearest] - yy, cx[nearest] - xx], axis=-1)
  offsets += rng.normal(0, 1.0, offsets.shape).astype(np.float32)
  stuff_ids = [i for i in range(num_classes) if i not in thing_ids]
  label = np.asarray(stuff_ids)[np.minimum(3 * yy.astype(np.int64) // height,
                                           len(stuff_ids) - 1)]
  inside = np.sqrt(best) < radius[nearest]
  label[inside] = np.asarray(thing_ids)[nearest[inside] % len(thing_ids)]
  logits = rng.normal(0, 1, (height, width, num_classes)).astype(np.float32)
  np.put_along_axis(logits, label[..., None],
                    np.take_along_axis(logits, label[..., None], -1) + 3.0, -1)
  return (logits[None], heat[None, ..., None].astype(np.float32),
          offsets[None].astype(np.float32))


def main(argv):
  del argv
  info = datasets.CITYSCAPES
  logits, heat, offsets = make_raw_outputs(
      _HEIGHT.value, _WIDTH.value, info.num_classes, _NUM_CENTERS.value,
      info.thing_train_ids)
  logits, heat, offsets = map(tf.constant, (logits, heat, offsets))

  @tf.function(jit_compile=_JIT.value, input_signature=[
      tf.TensorSpec([None, None, None, info.num_classes], tf.float32),
      tf.TensorSpec([None, None, None, 1], tf.float32),
      tf.TensorSpec([None, None, None, 2], tf.float32)])
  def run(s, c, o):
    return panoptic.panoptic_deeplab_post_process(
        s, c, o, thing_ids=info.thing_train_ids,
        label_divisor=info.label_divisor, ignore_label=info.ignore_label)

  out = run(logits, heat, offsets)
  num_found = int(tf.reduce_sum(
      tf.cast(out[common.PRED_CENTER_POINTS][0, :, 0] >= 0, tf.int32)))
  thing_fraction = float(tf.reduce_mean(
      tf.cast(out[common.PRED_INSTANCE] > 0, tf.float32)))
  run(logits, heat, offsets)
  times, cpu_times = [], []
  for _ in range(_RUNS.value):
    start, cpu_start = time.perf_counter(), time.process_time()
    out = run(logits, heat, offsets)
    out[common.PRED_PANOPTIC].numpy()
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  print(f'{_HEIGHT.value}x{_WIDTH.value}, {info.num_classes} classes, '
        f'{num_found} centers found, {100 * thing_fraction:.0f} % thing '
        f'pixels, jit_compile={_JIT.value}, {os.cpu_count()} CPUs: median '
        f'{statistics.median(times):.3f} s over {_RUNS.value} runs '
        f'(min {min(times):.3f} s); CPU seconds (all threads) median '
        f'{statistics.median(cpu_times):.3f}; load {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
  app.run(main)
