"""Every gin file in gin/ parses, and names only parameters that exist."""

import glob
import os

import gin
import pytest

from official_naive_student.core import gin_utils

GIN_FILES = sorted(glob.glob(os.path.join(gin_utils.GIN_DIR, '**', '*.gin'),
                             recursive=True))


def test_gin_files_exist():
  names = {os.path.relpath(p, gin_utils.GIN_DIR) for p in GIN_FILES}
  assert 'demo/teacher.gin' in names


@pytest.mark.parametrize('path', GIN_FILES,
                         ids=[os.path.relpath(p, gin_utils.GIN_DIR)
                              for p in GIN_FILES])
def test_gin_file_parses(path):
  gin.add_config_file_search_path(gin_utils.GIN_DIR)
  # Model-only files bind build_panoptic_deeplab, which lives in presets.
  gin.parse_config('import official_naive_student.modeling.presets')
  gin.parse_config_file(path)
  assert gin.config_str() is not None


def test_resolve_gin_file_relative_to_gin_dir(tmp_path):
  assert gin_utils.resolve_gin_file('demo/teacher.gin').endswith(
      os.path.join('gin', 'demo', 'teacher.gin'))
  assert gin_utils.resolve_gin_file('gin/demo/teacher.gin').endswith(
      os.path.join('gin', 'demo', 'teacher.gin'))
  with pytest.raises(FileNotFoundError, match='nope.gin'):
    gin_utils.resolve_gin_file(str(tmp_path / 'nope.gin'))
