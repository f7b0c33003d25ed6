"""Atomic file and directory writes, so a killed job never leaves a half-written file.

Everything the project writes that a later run reads (labels, pseudo-labels, TFRecord
shards, summaries of stages, SavedModels) goes through here: write to a temporary
name in the same folder, then rename, which is atomic on POSIX file systems. Plain
`os` calls on purpose: worker processes that write PNGs need not import TensorFlow.
"""

import contextlib
import json
import os
import shutil
import time
import uuid
from typing import Any, Callable, Iterator, List, Optional

DONE_MARKER = 'DONE'


def _tmp_name(path: str) -> str:
  return f'{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}'


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`, renamed to `path` if the block
  succeeds and removed if it fails: readers never see a partial file."""
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  tmp = _tmp_name(path)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temporary file and a rename."""
  with atomic_file(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: str, obj: Any, indent: int = 2) -> None:
  atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + '\n')


def write_json_once(path: str, obj: Any) -> bool:
  """Writes `path` unless it exists; of concurrent writers the first wins.

  The complete file is hard-linked into place, which fails if `path` exists.
  Returns whether this call wrote it.
  """
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  tmp = _tmp_name(path)
  try:
    with open(tmp, 'w') as f:
      f.write(json.dumps(obj, indent=2) + '\n')
    os.link(tmp, path)
    return True
  except FileExistsError:
    return False
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
  """Yields a temporary folder that becomes `path` only if the block succeeds.

  An existing `path` is replaced. A failure leaves `path` as it was and removes
  the temporary folder.
  """
  tmp = _tmp_name(path.rstrip('/'))
  os.makedirs(tmp)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(path):
    shutil.rmtree(path)
  os.replace(tmp, path)


def relative_symlink(origin: str, link: str, home: Optional[str] = None) -> None:
  """Links `origin` at `link` by a path relative to `home`, the folder the link
  will live in (default: `link`'s own), so a tree moved whole keeps its links.

  Pass `home` when the link is made inside a temporary folder that is renamed
  to `home` afterwards. `origin` is resolved first: no chains of links.
  """
  home = os.path.dirname(link) if home is None else home
  os.symlink(os.path.relpath(os.path.realpath(origin), os.path.realpath(home)),
             link)


def is_done(directory: str) -> bool:
  """True when `directory` holds a DONE marker written by `mark_done`."""
  return os.path.exists(os.path.join(directory, DONE_MARKER))


def mark_done(directory: str, info: Any = None) -> None:
  """Writes the DONE marker last, after everything else in `directory`."""
  atomic_write_json(os.path.join(directory, DONE_MARKER), info or {})


def remove_stale_temporaries(directory: str) -> int:
  """Deletes `*.tmp-*` leftovers of killed writers; returns how many."""
  if not os.path.isdir(directory):
    return 0
  count = 0
  for name in os.listdir(directory):
    if '.tmp-' in name:
      full = os.path.join(directory, name)
      if os.path.isdir(full):
        shutil.rmtree(full)
      else:
        os.remove(full)
      count += 1
  return count


def remove_temporaries(directory: str, owned: Callable[[str], bool],
                       max_age_seconds: Optional[float] = None) -> List[str]:
  """Deletes `<target>.tmp-*` leftovers that are ours, or old; returns them.

  Where several processes write into one folder, a temporary may be another
  one's file in the making: only those whose target `owned(target)` accepts
  are removed at once, the others once untouched for `max_age_seconds`
  (None: never).
  """
  if not os.path.isdir(directory):
    return []
  removed = []
  for name in os.listdir(directory):
    if '.tmp-' not in name:
      continue
    full = os.path.join(directory, name)
    try:
      age = time.time() - os.path.getmtime(full)
      if not owned(name.split('.tmp-')[0]) and (
          max_age_seconds is None or age < max_age_seconds):
        continue
      if os.path.isdir(full):
        shutil.rmtree(full)
      else:
        os.remove(full)
    except FileNotFoundError:  # Its writer renamed or removed it meanwhile.
      continue
    removed.append(name)
  return removed
