"""core/file_io: the one way files are written atomically."""

import os

import pytest

from official_naive_student.core import file_io


def test_atomic_file_appears_whole_or_not_at_all(tmp_path):
  path = str(tmp_path / 'sub' / 'out.txt')
  with file_io.atomic_file(path) as tmp:
    with open(tmp, 'w') as f:
      f.write('done')
    assert not os.path.exists(path)
  assert open(path).read() == 'done'
  with pytest.raises(RuntimeError):
    with file_io.atomic_file(path) as tmp:
      with open(tmp, 'w') as f:
        f.write('half')
      raise RuntimeError('killed')
  assert open(path).read() == 'done'
  assert os.listdir(tmp_path / 'sub') == ['out.txt']  # No temporary left.


def test_write_json_once_keeps_the_first(tmp_path):
  path = str(tmp_path / 'settings.json')
  assert file_io.write_json_once(path, {'a': 1})
  assert not file_io.write_json_once(path, {'a': 2})
  assert file_io.read_json(path) == {'a': 1}
  assert os.listdir(tmp_path) == ['settings.json']
