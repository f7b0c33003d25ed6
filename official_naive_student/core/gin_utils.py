"""Gin parsing for entry points, and the operative config written next to results."""

import os
from typing import Sequence

from absl import logging
import gin

from official_naive_student.core import file_io

# Folder of the project's gin files, so `--gin_file demo/naive_student.gin` works
# from any working directory.
GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'gin')


def resolve_gin_file(path: str) -> str:
  """Accepts a path, or a path relative to the repository's gin/ folder."""
  if os.path.exists(path):
    return path
  for candidate in (os.path.join(GIN_DIR, path),
                    os.path.join(GIN_DIR, path[len('gin/'):])
                    if path.startswith('gin/') else None):
    if candidate and os.path.exists(candidate):
      return candidate
  raise FileNotFoundError(f'gin file {path!r} not found (also looked in {GIN_DIR})')


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin files (resolved against gin/) and bindings, in that order."""
  gin.add_config_file_search_path(GIN_DIR)
  files = [resolve_gin_file(f) for f in gin_files or ()]
  gin.parse_config_files_and_bindings(files, gin_bindings or (),
                                      finalize_config=False)
  logging.info('Gin config:\n%s', gin.config_str())


def write_operative_config(directory: str, name: str = 'operative_config.gin') -> str:
  """Writes the config actually used (after a run) into `directory`, atomically."""
  path = os.path.join(directory, name)
  file_io.atomic_write_text(path, gin.operative_config_str())
  return path
