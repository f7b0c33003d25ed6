"""Converts records to sharded, validated TFRecords that survive a killed run.

Training streams TFRecords rather than files so that a TPU or a GPU host reads a few
large sequential files, and so that every example is decoded and validated once,
here, before any training starts (`decode.example_payload` raises on a corrupt
image, a size mismatch or an unknown label id, naming the file). All examples are
checked; the run fails with the full list of bad files, and a shard holding a bad
example is never written.

Resuming: each shard is written as `<name>.tmp-*` and renamed when complete, so an
existing shard is complete and is skipped by a re-run; leftover temporaries of a
killed run are deleted. `<prefix>.plan.json` fixes which image goes to which shard,
so a re-run with a different record list fails instead of mixing two conversions.
`manifest.json` is written last.

Example features (see the *_KEY constants): the image bytes as found on disk (PNG
or JPEG), the panoptic label as an RGB PNG (id = R + 256 G + 65536 B, the project's
train-id panoptic ids; empty for unlabeled frames), image id, sequence id, frame
number, height and width.
"""

import multiprocessing
import os
import sys
import time
from typing import Dict, List, Sequence

import tensorflow as tf

from official_naive_student.core import file_io
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode

IMAGE_KEY = 'image/encoded'
IMAGE_FORMAT_KEY = 'image/format'
IMAGE_ID_KEY = 'image/filename'
HEIGHT_KEY = 'image/height'
WIDTH_KEY = 'image/width'
SEQUENCE_ID_KEY = 'video/sequence_id'
FRAME_KEY = 'video/frame_id'
LABEL_KEY = 'image/panoptic/encoded'
LABEL_FORMAT_KEY = 'image/panoptic/format'
LABEL_FORMAT = 'png_rgb'
MANIFEST_NAME = 'manifest.json'


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def to_example(payload: dict) -> tf.train.Example:
  """`decode.example_payload` output -> tf.train.Example."""
  label = payload['label_png']
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_KEY: _bytes(payload['image_bytes']),
      IMAGE_FORMAT_KEY: _bytes(payload['image_format'].encode()),
      IMAGE_ID_KEY: _bytes(payload['image_id'].encode()),
      HEIGHT_KEY: _int(payload['height']),
      WIDTH_KEY: _int(payload['width']),
      SEQUENCE_ID_KEY: _bytes(payload['sequence_id'].encode()),
      FRAME_KEY: _int(payload['frame']),
      LABEL_KEY: _bytes(label),
      LABEL_FORMAT_KEY: _bytes(LABEL_FORMAT.encode() if label else b''),
  }))


def shard_names(prefix: str, num_shards: int) -> List[str]:
  return [f'{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord'
          for i in range(num_shards)]


class _Progress:
  """A one-line stderr progress report with rate and ETA, at most 2 per second."""

  def __init__(self, total: int, name: str, enabled: bool = True):
    self._total, self._name, self._enabled = total, name, enabled
    self._start = self._last = time.time()
    self.done = 0

  def update(self, n: int = 1, final: bool = False) -> None:
    self.done += n
    now = time.time()
    if not self._enabled or (now - self._last < 0.5 and not final):
      return
    self._last = now
    rate = self.done / max(now - self._start, 1e-9)
    eta = (self._total - self.done) / rate if rate > 0 else 0.0
    sys.stderr.write(f'\r{self._name}: {self.done}/{self._total} examples, '
                     f'{rate:.1f}/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}')
    if final:
      sys.stderr.write('\n')
    sys.stderr.flush()


def _check_plan(output_dir: str, prefix: str,
                plan: Dict[str, List[str]]) -> None:
  path = os.path.join(output_dir, f'{prefix}.plan.json')
  if os.path.exists(path):
    old = file_io.read_json(path)
    if old != plan:
      raise ValueError(f'{path}: {output_dir} holds a conversion of other '
                       'records or another shard count; use a new output_dir')
  else:
    file_io.atomic_write_json(path, plan, indent=None)


def write_tfrecords(records: Sequence[cityscapes_files.Record],
                    output_dir: str,
                    num_shards: int,
                    dataset_name: str = 'cityscapes',
                    num_workers: int = 0,
                    prefix: str = 'data',
                    split: str = '',
                    progress: bool = True) -> dict:
  """Validates `records` and writes them as `num_shards` TFRecord files.

  Args:
    records: what to convert; shard i gets records[i::num_shards], so every
      shard mixes cities and sequences.
    output_dir: destination (created); re-running with the same arguments
      resumes a killed run.
    num_shards: number of output files.
    dataset_name: `datasets.get_dataset_info` name (label space of decoding).
    num_workers: processes that decode and validate; 0 runs in this process.
    prefix: shard file name prefix.
    split: split name recorded in the manifest.
    progress: print a progress line to stderr.

  Returns:
    The manifest dict (also written to `output_dir/manifest.json`).

  Raises:
    ValueError: one or more records failed validation (all are listed), or
      output_dir holds another conversion.
  """
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  tf.io.gfile.makedirs(output_dir)
  file_io.remove_stale_temporaries(output_dir)
  names = shard_names(prefix, num_shards)
  per_shard = [list(records[i::num_shards]) for i in range(num_shards)]
  _check_plan(output_dir, prefix,
              {n: [r.image_id for r in s] for n, s in zip(names, per_shard)})
  pending = [i for i, n in enumerate(names)
             if not tf.io.gfile.exists(os.path.join(output_dir, n))]
  tasks = [(i, r, dataset_name) for i in pending for r in per_shard[i]]
  report = _Progress(len(tasks), prefix, progress)
  buffers = {i: [] for i in pending}
  failed_shards, errors = set(), []

  def finish(i):
    if i in failed_shards:
      return
    path = os.path.join(output_dir, names[i])
    tmp = f'{path}.tmp-{os.getpid()}'
    with tf.io.TFRecordWriter(tmp) as writer:
      for serialized in buffers.pop(i):
        writer.write(serialized)
    tf.io.gfile.rename(tmp, path, overwrite=True)

  for i in pending:
    if not per_shard[i]:
      finish(i)
  pool = None
  if num_workers > 0:
    # 'spawn': workers import only numpy/PIL, not a forked TensorFlow runtime.
    pool = multiprocessing.get_context('spawn').Pool(num_workers)
    results = pool.imap(decode.shard_task, tasks, chunksize=2)
  else:
    results = map(decode.shard_task, tasks)
  try:
    for shard, _, payload, error in results:
      if error is not None:
        errors.append(error)
        failed_shards.add(shard)
        buffers[shard].append(None)
      else:
        buffers[shard].append(to_example(payload).SerializeToString())
      if len(buffers[shard]) == len(per_shard[shard]):
        if shard in failed_shards:
          buffers.pop(shard)
        else:
          finish(shard)
      report.update()
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()
  report.update(0, final=True)
  if errors:
    shown = '\n  '.join(errors[:50])
    raise ValueError(f'{len(errors)} of {len(records)} examples failed '
                     f'validation (their shards were not written):\n  {shown}')
  manifest = {
      'split': split,
      'dataset': dataset_name,
      'num_examples': len(records),
      'num_labeled': sum(r.has_label for r in records),
      'label_format': LABEL_FORMAT,
      'shards': [{'file': n, 'num_examples': len(s)}
                 for n, s in zip(names, per_shard)],
  }
  file_io.atomic_write_json(os.path.join(output_dir, MANIFEST_NAME), manifest)
  return manifest


def manifest_files(output_dir: str) -> List[str]:
  """Shard paths listed by a finished conversion's manifest (fails if absent)."""
  path = os.path.join(output_dir, MANIFEST_NAME)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: no manifest; the conversion did not '
                            'finish')
  return [os.path.join(output_dir, s['file'])
          for s in file_io.read_json(path)['shards']]


def default_prefix(split: str) -> str:
  """'train-fine+val-fine' -> 'train-fine_val-fine' (a safe file prefix)."""
  return split.replace('+', '_')
