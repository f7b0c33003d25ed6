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


def test_relative_symlink_survives_a_move_of_the_whole_tree(tmp_path):
  tree = tmp_path / 'tree'
  (tree / 'data' / 'ckpt').mkdir(parents=True)
  (tree / 'data' / 'ckpt' / 'w.txt').write_text('weights')
  # A link to a link is resolved: the new link names the final folder.
  os.symlink(os.path.join('data', 'ckpt'), str(tree / 'alias'))
  (tree / 'runs').mkdir()
  file_io.relative_symlink(str(tree / 'alias'), str(tree / 'runs' / 'ckpt'))
  assert os.readlink(str(tree / 'runs' / 'ckpt')) == os.path.join(
      '..', 'data', 'ckpt')
  # Made inside a temporary folder (here one level deeper) that is renamed to
  # `home` afterwards.
  tmp = tree / 'scratch' / 'stage.tmp'
  tmp.mkdir(parents=True)
  file_io.relative_symlink(str(tree / 'data' / 'ckpt'), str(tmp / 'ckpt'),
                           home=str(tree / 'stage'))
  os.rename(str(tmp), str(tree / 'stage'))
  moved = tmp_path / 'moved'
  os.rename(str(tree), str(moved))
  for link in ('runs', 'stage'):
    assert not os.path.isabs(os.readlink(str(moved / link / 'ckpt')))
    assert (moved / link / 'ckpt' / 'w.txt').read_text() == 'weights'
