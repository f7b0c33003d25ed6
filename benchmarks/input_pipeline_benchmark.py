r"""Images/s of the full training input pipeline on Cityscapes-sized frames.

Writes a few 1024x2048 frames in the Cityscapes layout (`tiny_cityscapes`),
converts them with `tfrecord_writer` (timed too), then times `InputPipeline` in
'train' mode: TFRecord read, PNG decode, random scale/crop/flip to 512x1024
(`augment`) and Panoptic-DeepLab targets (`targets`), batched, after a warm-up.

  python benchmarks/input_pipeline_benchmark.py --num_batches=10
"""

import os
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.dataloaders import tfrecord_writer
from official_naive_student.dataloaders import tiny_cityscapes
# pylint: enable=g-import-not-at-top,wrong-import-position

_NUM_BATCHES = flags.DEFINE_integer('num_batches', 10, 'Timed batches.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed batches.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Batch size.')
_CROP = flags.DEFINE_list('crop_size', ['512', '1024'], 'Crop height, width.')
_FRAME = flags.DEFINE_list('frame_size', ['1024', '2048'], 'Frame size.')
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'Scratch folder (default: a new temp folder).')


def main(argv):
  del argv
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='input_bench_')
  height, width = (int(v) for v in _FRAME.value)
  crop = tuple(int(v) for v in _CROP.value)
  root = os.path.join(workdir, 'cityscapes')
  tiny_cityscapes.write_tree(root, height, width, sequences=False,
                             splits=('train', 'val'))
  records = cityscapes_files.find_records(root, 'train-fine+val-fine')
  start = time.time()
  tfrecord_writer.write_tfrecords(records, os.path.join(workdir, 'tfr'), 2,
                                  progress=False)
  convert = time.time() - start
  pipeline = input_pipeline.InputPipeline(
      file_pattern=os.path.join(workdir, 'tfr'), mode='train',
      global_batch_size=_BATCH.value, crop_size=crop, seed=0)
  iterator = iter(pipeline.dataset_fn())
  for _ in range(_WARMUP.value):
    next(iterator)
  start = time.time()
  for _ in range(_NUM_BATCHES.value):
    next(iterator)
  elapsed = time.time() - start
  images = _NUM_BATCHES.value * _BATCH.value
  print(f'conversion: {len(records) / convert:.2f} examples/s '
        f'({height}x{width}, validate + label PNG encode, 1 process)')
  print(f'train pipeline: {images / elapsed:.2f} images/s, '
        f'{crop[0]}x{crop[1]} crops from {height}x{width} frames with targets, '
        f'batch {_BATCH.value}, {os.cpu_count()} CPUs')
  if not _WORKDIR.value:
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
