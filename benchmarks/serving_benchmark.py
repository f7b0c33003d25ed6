r"""Latency of an exported SavedModel's `serve_images` signature, one image a call.

Exports a random-init model (by default the tiny preset) to a temporary folder,
loads it back with `tf.saved_model.load` as a server would, warms up, and
reports the median (and min/max) of N timed calls at 512x1024, pre- and
post-processing included. `--full` does the same for the paper's WR-41 student
at Cityscapes resolution 1025x2049 (a few GB of memory, minutes per call on a
small CPU); `--saved_model` times an existing export instead.

  PYTHONPATH=. python benchmarks/serving_benchmark.py --runs=10
  PYTHONPATH=. python benchmarks/serving_benchmark.py --full --runs=3 \
      [--warmup=1]
  PYTHONPATH=. python benchmarks/serving_benchmark.py \
      --saved_model=exported/panoptic --height=1025 --width=2049
"""

import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from official_naive_student.modeling import presets
from official_naive_student.serving import export_lib
from official_naive_student.serving import export_module
from official_naive_student.serving import predict_lib
from official_naive_student.tasks import panoptic_deeplab

_SAVED_MODEL = flags.DEFINE_string(
    'saved_model', None, 'Time this export (or its newest version) instead.')
_FULL = flags.DEFINE_bool(
    'full', False, 'Export the WR-41 student (panoptic_deeplab_wr41) and time '
    'it at 1025x2049 unless --height/--width are given.')
_HEIGHT = flags.DEFINE_integer('height', None, 'Image height (512; 1025 with '
                               '--full).')
_WIDTH = flags.DEFINE_integer('width', None, 'Image width (1024; 2049 with '
                              '--full).')
_RUNS = flags.DEFINE_integer('runs', 10, 'Timed calls after the warm-ups.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed calls (at least 1).')
_TTA_FLIP = flags.DEFINE_bool('tta_flip', False, 'Export with flip TTA.')


def export_random_model(preset: str, export_dir: str, tta_flip: bool) -> str:
  """Exports `preset` with random weights (latency needs no training)."""
  task = panoptic_deeplab.PanopticDeepLabTask(
      model_fn=lambda num_classes: presets.build_panoptic_deeplab(
          preset, num_classes=num_classes))
  model = task.build_model()
  model(tf.zeros([1, 65, 65, 3]), training=False)
  module = export_module.PanopticExportModule(
      model, task.build_post_processor(), tta_flip=tta_flip)
  return export_lib.save_module(module, export_dir, version=1)


def main(argv):
  del argv
  height = _HEIGHT.value or (1025 if _FULL.value else 512)
  width = _WIDTH.value or (2049 if _FULL.value else 1024)
  preset = 'panoptic_deeplab_wr41' if _FULL.value else 'tiny'
  with tempfile.TemporaryDirectory() as tmp:
    if _SAVED_MODEL.value:
      path, preset = predict_lib.latest_saved_model(_SAVED_MODEL.value), 'given'
    else:
      path = export_random_model(preset, os.path.join(tmp, 'exported'),
                                 _TTA_FLIP.value)
    serve = tf.saved_model.load(path).signatures[export_module.SERVE_IMAGES]
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (1, height, width, 3), np.uint8))
    for _ in range(max(1, _WARMUP.value)):
      serve(images=images)['panoptic'].numpy()
    times = []
    for _ in range(_RUNS.value):
      start = time.perf_counter()
      serve(images=images)['panoptic'].numpy()
      times.append(time.perf_counter() - start)
  device = 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'
  print(f'serve_images {preset} {height}x{width} on {device} '
        f'({os.cpu_count()} cores), {_RUNS.value} runs: median '
        f'{statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} '
        f'ms, max {max(times) * 1e3:.1f} ms per image')


if __name__ == '__main__':
  app.run(main)
