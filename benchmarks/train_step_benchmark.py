"""Where a demo training step's time goes: input pipeline, compute, the whole loop.

Measures, for the demo's Teacher (tiny WR-41, batch 4, 128x256 crops of the
synthetic 256x512 frames):
  * input: batches/s of the training `tf.data` pipeline alone;
  * compute: steps/s of the trainer's compiled step on one fixed batch;
  * loop: steps/s of `Trainer.train` (both together, as a run sees them).

  PYTHONPATH=. python benchmarks/train_step_benchmark.py \
      --root runs/synthetic_demo [--cache_decoded=false] [--mixed_precision=...]
"""

import functools
import tempfile
import time

from absl import app
from absl import flags
import tensorflow as tf

from official_naive_student.core import trainer as trainer_lib
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.losses import panoptic_losses
from official_naive_student.modeling import presets
from official_naive_student.tasks import panoptic_deeplab as task_lib

_ROOT = flags.DEFINE_string('root', 'runs/synthetic_demo', 'Dataset root.')
_SPLIT = flags.DEFINE_string('split', 'train-fine', 'Training split.')
_PRESET = flags.DEFINE_string('preset', 'tiny', 'Network preset.')
_CROP = flags.DEFINE_list('crop_size', ['128', '256'], 'Training crop.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 200, 'Measured steps (or batches).')
_CACHE = flags.DEFINE_bool('cache_decoded', True,
                           'InputPipeline.cache_decoded.')
_PRECISION = flags.DEFINE_string('mixed_precision', None,
                                 'None or mixed_bfloat16.')
_OUTPUT_STRIDE = flags.DEFINE_integer('output_stride', 16,
                                     'Network output stride.')
_THREADS = flags.DEFINE_integer('inter_op_threads', 0,
                                'tf.config inter-op threads (0: default).')


def _task(cache_decoded: bool):
  pipeline = input_pipeline.InputPipeline(
      records=cityscapes_files.find_records(_ROOT.value, _SPLIT.value),
      dataset_name='synthetic', mode='train',
      crop_size=[int(c) for c in _CROP.value],
      global_batch_size=_BATCH.value, cache_decoded=cache_decoded)
  return task_lib.PanopticDeepLabTask(
      train_data=lambda: pipeline, dataset_name='synthetic',
      model_fn=functools.partial(presets.build_panoptic_deeplab,
                                 preset=_PRESET.value,
                                 output_stride=_OUTPUT_STRIDE.value),
      loss_fn=functools.partial(panoptic_losses.PanopticLoss,
                                top_k_percent=1.0))


def _rate(fn, count: int) -> float:
  fn(10)  # Warm-up: tracing, first decodes.
  began = time.perf_counter()
  fn(count)
  return count / (time.perf_counter() - began)


def main(_):
  if _THREADS.value:
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  task = _task(_CACHE.value)
  iterator = iter(task.train_dataset_fn())

  def pull(n):
    for _ in range(n):
      next(iterator)
  input_rate = _rate(pull, _STEPS.value)

  with tempfile.TemporaryDirectory() as model_dir:
    trainer = trainer_lib.Trainer(task, model_dir, num_steps=10 ** 6,
                                  mixed_precision=_PRECISION.value,
                                  checkpoint_every=0, summary_every=10 ** 6)
    batch = next(iterator)
    step = tf.function(trainer._replica_step)  # pylint: disable=protected-access

    def compute(n):
      for _ in range(n):
        result = step(*batch)
      float(result['total_loss'])
    compute_rate = _rate(compute, _STEPS.value)

  with tempfile.TemporaryDirectory() as model_dir:
    def loop(n):
      trainer = trainer_lib.Trainer(_task(_CACHE.value), model_dir,
                                    num_steps=n, checkpoint_every=0,
                                    summary_every=50,
                                    mixed_precision=_PRECISION.value)
      trainer.train()
    loop(10)
    began = time.perf_counter()
    loop(10 + _STEPS.value)  # Resumes at step 10: start-up, then the steps.
    loop_rate = _STEPS.value / (time.perf_counter() - began)
  trainer_lib.set_mixed_precision(None)
  print(f'cache_decoded={_CACHE.value} mixed_precision={_PRECISION.value} '
        f'preset={_PRESET.value} output_stride={_OUTPUT_STRIDE.value} '
        f'crop={_CROP.value} batch={_BATCH.value}')
  print(f'input pipeline alone: {input_rate:7.1f} batches/s')
  print(f'compute alone:        {compute_rate:7.1f} steps/s')
  print(f'Trainer.train:        {loop_rate:7.1f} steps/s '
        '(includes start-up and a final checkpoint)')


if __name__ == '__main__':
  app.run(main)
