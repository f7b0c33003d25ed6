"""settings.json of a pseudo-label folder: what its labels depend on.

Labels are only reusable with the Teacher and the options that made them. The
first run of a folder writes its settings; every later run, or another shard,
computes its own and must agree, or fails naming the keys that differ,
before doing any work and even when the folder is finished: silently reusing
an old Teacher's labels would train the Student on them. The Teacher is
recorded by a fingerprint of its checkpoint's contents, not by path, so a
moved folder still matches.
"""

import hashlib
import json
import os
from typing import Dict, Optional, Sequence

import tensorflow as tf

from official_naive_student import datasets
from official_naive_student.core import file_io

SETTINGS_FILE = 'settings.json'
# Settings a finished folder need not share with a re-run: how the work was
# split does not change the labels.
SPLIT_SETTINGS = ('num_shards',)
# Settings kept for readers, never compared: the Teacher's size tells apart
# networks of one preset built at other widths, which teacher_sha256 already
# does (folders written before it existed lack it).
RECORD_ONLY_SETTINGS = ('num_parameters',)
_REMEDY = ('another output_dir, or overwrite=True (--overwrite) to delete these '
           'labels and start over')


class SettingsMismatchError(ValueError):
  """The folder holds labels made with other settings (or of unknown origin)."""


def teacher_fingerprint(prefix: str) -> str:
  """sha256 of a checkpoint's `.index` file and its prefix's basename.

  The index lists every variable with its shape and the checksum of its
  bytes, so other weights give another fingerprint; the folder the checkpoint
  sits in does not matter.
  """
  digest = hashlib.sha256(os.path.basename(prefix).encode() + b'\0')
  with tf.io.gfile.GFile(prefix + '.index', 'rb') as f:
    digest.update(f.read())
  return digest.hexdigest()


def teacher_settings(prefix: str, model, scales: Sequence[float] = (1.0,),
                     flip: bool = False) -> Dict[str, object]:
  """The entries that identify the Teacher's predictions.

  Args:
    prefix: the Teacher's checkpoint prefix.
    model: the Teacher's network, built (its weights need not exist yet):
      its name (a preset's name), its number of parameters (a preset built
      at another width has the same name) and dtype policy are recorded.
    scales: TTA input scales.
    flip: TTA left-right flip.
  """
  return {'teacher_checkpoint': os.path.basename(prefix),
          'teacher_sha256': teacher_fingerprint(prefix),
          'network': model.name, 'num_parameters': int(model.count_params()),
          'precision': model.dtype_policy.name,
          'scales': [float(s) for s in scales], 'flip': bool(flip)}


def _records_digest(records: Sequence) -> str:
  ids = '\n'.join(sorted(r.image_id for r in records))
  return hashlib.sha1(ids.encode()).hexdigest()


def label_settings(records: Sequence, dataset: datasets.DatasetInfo,
                   ego_car_void: bool, eval_pad_size: Optional[Sequence[int]],
                   num_shards: int, extra: Optional[Dict[str, object]] = None
                   ) -> Dict[str, object]:
  """All of settings.json: `extra` (the Teacher's) and how frames are labeled."""
  settings = dict(
      extra or {}, num_shards=num_shards, num_records=len(records),
      records_sha1=_records_digest(records), dataset=dataset.name,
      ego_car_void=ego_car_void, eval_pad_size=eval_pad_size)
  return json.loads(json.dumps(settings))  # Tuples -> lists, as read back.


def read_settings(output_dir: str) -> Optional[dict]:
  path = os.path.join(output_dir, SETTINGS_FILE)
  return file_io.read_json(path) if os.path.exists(path) else None


def compare_settings(output_dir: str, settings: Dict[str, object],
                     ignore: Sequence[str] = ()) -> None:
  """Checks `settings` against the folder's settings.json.

  Keys in `ignore` and RECORD_ONLY_SETTINGS are not compared.

  Raises:
    SettingsMismatchError: naming every key that differs, or the folder has no
      settings.json.
  """
  path = os.path.join(output_dir, SETTINGS_FILE)
  existing = read_settings(output_dir)
  if existing is None:
    raise SettingsMismatchError(f'{output_dir}: labels without {SETTINGS_FILE}'
                                f', of unknown origin; use {_REMEDY}')
  ignore = (*ignore, *RECORD_ONLY_SETTINGS)
  keys = sorted(k for k in set(existing) | set(settings) if k not in ignore
                and existing.get(k) != settings.get(k))
  if keys:
    lines = ''.join(f'\n  {k}: {existing.get(k)!r} in the folder, '
                    f'{settings.get(k)!r} now' for k in keys)
    raise SettingsMismatchError(
        f'{path}: this folder holds labels made with other settings '
        f'({", ".join(keys)}):{lines}\nUse {_REMEDY}')


def check_settings(output_dir: str, settings: Dict[str, object]) -> None:
  """Writes settings.json once; later runs and other shards must agree with it.

  Raises:
    SettingsMismatchError: see `compare_settings`.
  """
  path = os.path.join(output_dir, SETTINGS_FILE)
  if not os.path.exists(path):
    file_io.write_json_once(path, settings)  # Another shard may be first.
  compare_settings(output_dir, settings)
