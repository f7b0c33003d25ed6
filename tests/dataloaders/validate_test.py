"""The validation pass: every bad file named in one error, passes cached."""

import dataclasses
import os

import numpy as np
from PIL import Image
import pytest

from official_naive_student import datasets
from official_naive_student import panoptic_rgb
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders import input_pipeline as ip
from official_naive_student.dataloaders import tiny_cityscapes
from official_naive_student.dataloaders import validate

INFO = datasets.CITYSCAPES


@pytest.fixture
def root(tmp_path):
  root = str(tmp_path / 'cityscapes')
  tiny_cityscapes.write_tree(root, height=64, width=128, sequences=False,
                             splits=('train', 'val'))
  return root


@pytest.fixture
def cache_dir(tmp_path):
  return str(tmp_path / 'cache')


def _records(root, split='train-fine'):
  return cf.find_records(root, split)


def _truncate(path):
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def _problems(records, cache_dir):
  return validate.find_problems(records, INFO, cache_dir=cache_dir)


def test_good_records_pass(root, cache_dir):
  assert _problems(_records(root, 'train-fine+val-fine'), cache_dir) == []
  validate.validate_records(_records(root), INFO, cache_dir)


def test_corrupt_png(root, cache_dir):
  records = _records(root)
  with open(records[0].label_path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + b'garbage' * 20)
  problems = _problems(records, cache_dir)
  assert len(problems) == 1
  assert problems[0].startswith(records[0].label_path + ': corrupt')


def test_truncated_jpeg(root, tmp_path, cache_dir):
  record = _records(root)[0]
  jpeg = str(tmp_path / 'frame.jpg')
  Image.open(record.image_path).save(jpeg, quality=90)
  assert _problems([dataclasses.replace(record, image_path=jpeg)],
                   cache_dir) == []
  _truncate(jpeg)
  problems = _problems([dataclasses.replace(record, image_path=jpeg)],
                       cache_dir)
  assert len(problems) == 1
  assert problems[0].startswith(f'{jpeg}: corrupt or truncated image (image '
                                'file is truncated'), problems


def test_image_and_label_sizes_differ(root, cache_dir):
  records = _records(root)
  image = np.zeros((50, 100, 3), np.uint8)
  Image.fromarray(image).save(records[1].image_path)
  problems = _problems(records, cache_dir)
  assert len(problems) == 1
  assert records[1].label_path in problems[0]
  assert '64x128 != 50x100' in problems[0]


def test_unknown_label_id(root, cache_dir):
  records = _records(root)
  label = np.array(Image.open(records[2].label_path))
  label[0, 0] = 200
  Image.fromarray(label, 'L').save(records[2].label_path)
  problems = _problems(records, cache_dir)
  assert problems == [f'{records[2].label_path}: label ids [200] not in the '
                      'label space']


def _panoptic_record(root, tmp_path, segments):
  """A pseudo-label record whose PNG holds segments 1 (road) and 2 (a car)."""
  record = _records(root)[0]
  ids = np.ones((64, 128), np.int32)
  ids[10:20, 10:30] = 2
  path = str(tmp_path / 'pseudo.png')
  Image.fromarray(panoptic_rgb.ids_to_rgb(ids), 'RGB').save(path)
  return dataclasses.replace(record, label_format=cf.LABEL_PANOPTIC,
                             label_path=path, instance_path=None,
                             segments=tuple(segments))


def test_panoptic_json_and_png_agree(root, tmp_path, cache_dir):
  both = [cf.Segment(1, 7, 0, -1), cf.Segment(2, 26, 0, -1)]
  assert _problems([_panoptic_record(root, tmp_path, both)], cache_dir) == []
  record = _panoptic_record(root, tmp_path, both[:1])
  problems = _problems([record], cache_dir)
  assert problems == [f'{record.label_path}: segment ids [2] are in the PNG '
                      'but not in its json entry']


def test_all_bad_files_in_one_error(root, cache_dir):
  records = _records(root, 'train-fine+val-fine')
  _truncate(records[0].image_path)
  _truncate(records[2].instance_path)
  os.remove(records[4].label_path)
  with pytest.raises(ValueError) as e:
    validate.validate_records(records + records, INFO, cache_dir)
  message = str(e.value)
  assert message.startswith('3 bad input files:\n  ')
  for path in (records[0].image_path, records[2].instance_path,
               records[4].label_path):
    assert path in message
  assert f'{records[4].label_path}: missing file' in message
  assert len(message.splitlines()) == 4


def test_second_call_reads_the_cache(root, cache_dir, monkeypatch):
  records = _records(root, 'train-fine+val-fine')
  decoded = []
  load_example = decode.load_example

  def counting(record, info):
    decoded.append(record.image_id)
    return load_example(record, info)

  monkeypatch.setattr(decode, 'load_example', counting)
  assert _problems(records, cache_dir) == []
  assert len(decoded) == len(records)
  assert os.listdir(cache_dir)
  decoded.clear()
  assert _problems(records, cache_dir) == []
  assert decoded == []
  # A changed file is checked again; a bad one is never cached.
  _truncate(records[1].label_path)
  assert len(_problems(records, cache_dir)) == 1
  assert len(_problems(records, cache_dir)) == 1
  assert decoded == [records[1].image_id] * 2


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert validate.default_cache_dir() == str(
      tmp_path / 'naive_student' / 'validate')


def test_pipelines_are_validated_together(root, cache_dir):
  train = ip.InputPipeline(records=_records(root), mode='train')
  val = ip.InputPipeline(records=_records(root, 'val-fine'), mode='eval')
  validate.validate_pipelines([train, None, val], cache_dir)
  _truncate(train.records[0].label_path)
  _truncate(val.records[0].image_path)
  with pytest.raises(ValueError, match='^2 bad input files'):
    validate.validate_pipelines([train, val], cache_dir)


def test_tfrecord_pipelines_are_skipped(cache_dir):

  class TFRecordPipeline:
    records = None

  validate.validate_pipelines([TFRecordPipeline()], cache_dir)
