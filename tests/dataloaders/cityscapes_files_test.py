"""Tests of Cityscapes record finding on a tiny tree with the real layout."""

import json
import os
import shutil

import pytest

from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import tiny_cityscapes


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('cityscapes'))
  tiny_cityscapes.write_tree(path)
  return path


@pytest.mark.parametrize('split, expected_ids', [
    ('train-fine', tiny_cityscapes.FINE_IDS['train']),
    ('val-fine', tiny_cityscapes.FINE_IDS['val']),
    ('test-fine', tiny_cityscapes.FINE_IDS['test']),
    ('train-extra', tiny_cityscapes.FINE_IDS['train_extra']),
    ('train-fine+val-fine',
     tiny_cityscapes.FINE_IDS['train'] + tiny_cityscapes.FINE_IDS['val']),
])
def test_fine_splits(root, split, expected_ids):
  records = cf.find_records(root, split)
  assert [r.image_id for r in records] == sorted(expected_ids)
  for r in records:
    assert os.path.isfile(r.image_path)
    city, seq, frame = cf.parse_image_id(r.image_id)
    assert r.sequence_id == f'{city}_{seq}' and r.frame == frame
    assert r.labeled_image_id == r.image_id
    assert r.split in split.split('+')


def test_fine_labels_only_for_train_and_val(root):
  for r in cf.find_records(root, 'train-fine+val-fine'):
    assert r.label_format == cf.LABEL_GTFINE
    assert r.label_path.endswith(r.image_id + '_gtFine_labelIds.png')
    assert r.instance_path.endswith(r.image_id + '_gtFine_instanceIds.png')
  for split in ('test-fine', 'train-extra', 'train-sequence'):
    assert not any(r.has_label for r in cf.find_records(root, split))
  extra, = cf.find_records(root, 'train-extra')
  assert extra.reference_label_path.endswith('_gtCoarse_labelIds.png')


def test_sequence_frames_map_to_their_snippet(root):
  records = cf.find_records(root, 'val-sequence')
  assert len(records) == 60
  by_id = {r.image_id: r for r in records}
  # Two snippets in one <city>_<seq>: frames 275..304 and 557..586.
  assert by_id['frankfurt_000000_000275'].labeled_image_id == (
      'frankfurt_000000_000294')
  assert by_id['frankfurt_000000_000304'].labeled_image_id == (
      'frankfurt_000000_000294')
  assert by_id['frankfurt_000000_000557'].labeled_image_id == (
      'frankfurt_000000_000576')
  assert all(r.sequence_id == 'frankfurt_000000' for r in records)
  assert by_id['frankfurt_000000_000586'].reference_label_path.endswith(
      'frankfurt_000000_000576_gtFine_labelIds.png')


def test_sequence_mapping_without_fine_images(root, tmp_path):
  copy = str(tmp_path / 'cs')
  shutil.copytree(os.path.join(root, 'leftImg8bit_sequence'),
                  os.path.join(copy, 'leftImg8bit_sequence'))
  with_fine = cf.find_records(root, 'train-sequence')
  without = cf.find_records(copy, 'train-sequence')
  assert ([r.labeled_image_id for r in without] ==
          [r.labeled_image_id for r in with_fine])
  assert all(r.reference_label_path is None for r in without)


def test_snippet_labeled_frames_worked_example():
  # Without annotated frames: runs of consecutive frames cut in 30s, 20th kept.
  frames = list(range(0, 60)) + list(range(100, 130))
  mapping = cf.snippet_labeled_frames(frames)
  assert mapping[0] == 19 and mapping[29] == 19 and mapping[30] == 49
  assert mapping[59] == 49 and mapping[100] == 119
  # With annotated frames, [L - 19, L + 10]; a frame of no snippet is left out.
  mapping = cf.snippet_labeled_frames([275, 304, 305], [294])
  assert mapping == {275: 294, 304: 294}


def test_union_keeps_first_split_of_a_duplicate(root):
  records = cf.find_records(root, 'train-fine+train-sequence')
  assert len(records) == 90  # 3 snippets of 30; the 3 fine frames are inside.
  labeled = [r.image_id for r in records if r.has_label]
  assert labeled == sorted(tiny_cityscapes.FINE_IDS['train'])


def test_missing_split_folder_names_path(tmp_path):
  with pytest.raises(FileNotFoundError, match='leftImg8bit/val'):
    cf.find_records(str(tmp_path), 'val-fine')


def test_empty_split_names_path(tmp_path):
  os.makedirs(tmp_path / 'leftImg8bit' / 'train' / 'aachen')
  with pytest.raises(ValueError, match=r'leftImg8bit/train: empty split'):
    cf.find_records(str(tmp_path), 'train-fine')


def test_image_without_label_names_image(root, tmp_path):
  copy = str(tmp_path / 'cs')
  shutil.copytree(root, copy)
  os.remove(os.path.join(copy, 'gtFine', 'val', 'frankfurt',
                         'frankfurt_000000_000576_gtFine_instanceIds.png'))
  with pytest.raises(FileNotFoundError,
                     match='frankfurt_000000_000576_leftImg8bit.png: image '
                     'without label'):
    cf.find_records(copy, 'val-fine')


def test_unknown_split():
  with pytest.raises(ValueError, match='Unknown split'):
    cf.find_records('/nonexistent', 'train-coarse')


def _write_pseudo_json(path, image_ids):
  annotations = [{'image_id': i, 'file_name': i + '_panoptic.png',
                  'segments_info': [{'id': 7, 'category_id': 7, 'iscrowd': 0,
                                     'area': 10}]} for i in image_ids]
  os.makedirs(os.path.splitext(path)[0], exist_ok=True)
  for i in image_ids:
    open(os.path.join(os.path.splitext(path)[0], i + '_panoptic.png'),
         'wb').close()
  with open(path, 'w') as f:
    json.dump({'annotations': annotations}, f)


def test_pseudo_label_json_overrides_labels(root, tmp_path):
  sequence = cf.find_records(root, 'val-sequence')
  json_path = str(tmp_path / 'pseudo.json')
  _write_pseudo_json(json_path, [r.image_id for r in sequence])
  records = cf.find_records(root, 'val-sequence', panoptic_json=json_path)
  assert all(r.label_format == cf.LABEL_PANOPTIC for r in records)
  assert records[0].segments == (cf.Segment(7, 7, 0, 10),)
  assert records[0].label_path == os.path.join(
      str(tmp_path / 'pseudo'), records[0].image_id + '_panoptic.png')
  assert records[0].labeled_image_id == 'frankfurt_000000_000294'


def test_pseudo_label_json_missing_annotation(root, tmp_path):
  sequence = cf.find_records(root, 'val-sequence')
  json_path = str(tmp_path / 'pseudo.json')
  _write_pseudo_json(json_path, [r.image_id for r in sequence[1:]])
  with pytest.raises(FileNotFoundError,
                     match=sequence[0].image_id + '_leftImg8bit.png: image '
                     'without label'):
    cf.find_records(root, 'val-sequence', panoptic_json=json_path)
  records = cf.find_records(root, 'val-sequence', panoptic_json=json_path,
                            require_labels=False)
  assert not records[0].has_label and all(r.has_label for r in records[1:])


def test_mix_records_repeats_the_small_part_to_its_share(root):
  many = cf.find_records(root, 'train-sequence')
  few = cf.find_records(root, 'train-fine')
  assert len(few) < len(many)
  mixed = cf.mix_records([many, few], shares=[0.5, 0.5])
  repeats = round(len(many) / len(few))
  assert mixed[:len(many)] == many
  assert mixed[len(many):] == few * repeats
  assert cf.mix_records([many, few]) == many + few  # No shares: concatenation.
  with pytest.raises(ValueError, match='shares'):
    cf.mix_records([many, few], shares=[1.0])
  with pytest.raises(ValueError, match='at least one record'):
    cf.mix_records([many, []])
