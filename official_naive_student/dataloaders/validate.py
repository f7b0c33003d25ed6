"""Checks every input file of a run before its first training step.

A bad file found by tf.data in the middle of training stops the job with a
traceback from deep inside the input pipeline, after the model was built and
maybe hours of steps; and it names one file when there may be ten. This pass
runs the checks of the TFRecord conversion on each record (`decode.load_example`:
image and label decode in full, sizes agree, label ids are in the label space,
panoptic PNGs agree with their json segments) and raises ONE error listing every
bad file.

It is fast enough to be on by default:
  * files are decoded in threads (PIL and numpy release the GIL while decoding);
  * records that passed are remembered in a small json cache keyed by each of
    their files' (path, size, mtime_ns), plus what the check depends on (label
    format, json segments, label space): an unchanged dataset is only stat-ed.

The cache lives in `~/.cache/naive_student/validate/` ($XDG_CACHE_HOME is
honoured), one file per distinct record list: not in the model folder, because
every Naive-Student stage and every new run has its own and re-reads the same
human labels; not under the dataset root, which is often a read-only shared
mount. Only passes are cached, so a bad file is re-checked until it is fixed.

TFRecord pipelines are skipped: `data/build_cityscapes_data.py` ran the same
checks when it wrote them.
"""

import concurrent.futures
import hashlib
import json
import os
import time
from typing import Iterable, List, Optional, Sequence, Tuple

from absl import logging

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode

CACHE_VERSION = 1
MAX_LISTED = 50  # Bad files named in the error; the rest are counted.


def default_cache_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'naive_student', 'validate')


def _files(record: cityscapes_files.Record) -> List[str]:
  return [p for p in (record.image_path, record.label_path,
                      record.instance_path) if p]


def record_key(record: cityscapes_files.Record,
               info: datasets.DatasetInfo) -> str:
  """Changes whenever a file of `record` or what its check depends on changes.

  Raises:
    FileNotFoundError: a file of the record is missing.
  """
  stats = []
  for path in _files(record):
    st = os.stat(path)
    stats.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
  payload = [CACHE_VERSION, info.name, record.label_format,
             record.category_id_space, record.segments, stats]
  return hashlib.sha1(json.dumps(payload).encode()).hexdigest()


def _cache_path(cache_dir: str, records: Sequence[cityscapes_files.Record],
                info: datasets.DatasetInfo) -> str:
  names = json.dumps([info.name] + [_files(r) for r in records])
  digest = hashlib.sha1(names.encode()).hexdigest()[:20]
  return os.path.join(cache_dir, f'{digest}.json')


def _read_cache(path: str) -> set:
  try:
    with open(path) as f:
      data = json.load(f)
    if data.get('version') == CACHE_VERSION:
      return set(data.get('ok', ()))
  except (OSError, ValueError, AttributeError):
    pass  # No cache yet, or an unreadable one: everything is checked.
  return set()


def _write_cache(path: str, keys: Iterable[str]) -> None:
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    file_io.atomic_write_json(path, {'version': CACHE_VERSION,
                                     'ok': sorted(keys)})
  except OSError as e:  # A read-only home only costs the next run time.
    logging.warning('input validation cache not written: %s', e)


def _check(record: cityscapes_files.Record, info: datasets.DatasetInfo,
           cached: set) -> Tuple[Optional[str], Optional[str]]:
  """(cache key or None, problem or None) of one record."""
  try:
    key = record_key(record, info)
    if key in cached:
      return key, None
    decode.load_example(record, info)
    return key, None
  except Exception as e:  # pylint: disable=broad-except
    return None, decode.record_error(record, e)


def find_problems(records: Sequence[cityscapes_files.Record],
                  info: datasets.DatasetInfo,
                  cache_dir: Optional[str] = None,
                  num_threads: Optional[int] = None) -> List[str]:
  """One line per bad record, naming its file and the problem; [] if all good.

  Args:
    records: what a pipeline will read (repeats are checked once).
    info: the label space the labels must be in.
    cache_dir: where passes are remembered (default `default_cache_dir()`).
    num_threads: decoding threads (default: the executor's, CPUs + 4).
  """
  records = list(dict.fromkeys(records))
  if not records:
    return []
  began = time.monotonic()
  cache_path = _cache_path(cache_dir or default_cache_dir(), records, info)
  cached = _read_cache(cache_path)
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    results = list(pool.map(lambda r: _check(r, info, cached), records))
  ok = {key for key, problem in results if problem is None}
  problems = [problem for _, problem in results if problem is not None]
  if ok != cached:
    _write_cache(cache_path, ok)
  logging.info('validated %d records (%d from the cache) in %.2f s: %d bad',
               len(records), len(ok & cached), time.monotonic() - began,
               len(problems))
  return problems


def raise_if_problems(problems: Sequence[str]) -> None:
  """Raises one short ValueError listing (up to MAX_LISTED) bad files."""
  if not problems:
    return
  lines = [f'  {p}' for p in problems[:MAX_LISTED]]
  if len(problems) > MAX_LISTED:
    lines.append(f'  ... and {len(problems) - MAX_LISTED} more')
  plural = 's' if len(problems) > 1 else ''
  raise ValueError(f'{len(problems)} bad input file{plural}:\n' +
                   '\n'.join(lines))


def validate_records(records: Sequence[cityscapes_files.Record],
                     info: datasets.DatasetInfo,
                     cache_dir: Optional[str] = None) -> None:
  """Raises ValueError naming every bad file of `records`."""
  raise_if_problems(find_problems(records, info, cache_dir))


def validate_pipelines(pipelines: Iterable[object],
                       cache_dir: Optional[str] = None) -> None:
  """Validates the records of `InputPipeline`s in one pass and one error.

  None entries and TFRecord pipelines (`records` is None) are skipped.
  """
  problems = []
  for pipeline in pipelines:
    records = getattr(pipeline, 'records', None)
    if records:
      problems.extend(find_problems(records, pipeline.dataset_info, cache_dir))
  raise_if_problems(list(dict.fromkeys(problems)))
