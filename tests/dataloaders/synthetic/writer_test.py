"""End-to-end checks of the synthetic Cityscapes writer on a tiny dataset.

The dataset (5 snippets of 30 frames at 96x192, 2 extra images) is the
smallest we found where every one of the 19 train classes shows up in the
labeled frames for several seeds, so the class-coverage check is meaningful.
"""

import glob
import json
import os

import numpy as np
import pytest
from PIL import Image
from cityscapesscripts.helpers import labels as cs_labels

from official_naive_student.dataloaders.synthetic import writer

_SEQ, _H, _W, _EXTRA = 5, 96, 192, 2
_TRAIN_LABEL_IDS = {l.id for l in cs_labels.labels if 0 <= l.trainId < 255}
_VALID_LABEL_IDS = {l.id for l in cs_labels.labels if l.id >= 0}
_THING_IDS = {l.id for l in cs_labels.labels if l.hasInstances}


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('synth'))
  info = writer.make_synthetic_cityscapes(
      root, _SEQ, seed=3, height=_H, width=_W, extra_images=_EXTRA,
      num_workers=1)
  return root, info


def _read(path):
  return np.array(Image.open(path))


def _files(root):
  return sorted(os.path.relpath(p, root)
                for p in glob.glob(os.path.join(root, '**', '*'), recursive=True)
                if os.path.isfile(p))


def test_layout_and_names_are_exactly_cityscapes(dataset):
  root, info = dataset
  assert info['split_sizes'] == {'train': 4, 'val': 1}
  expected = {'DONE', 'README.txt', 'dataset_info.json'}
  snippets = [('train', 'synthtown', 0), ('train', 'synthville', 0),
              ('train', 'synthtown', 1), ('train', 'synthville', 1),
              ('val', 'synthcity', 0)]
  for split, city, seq in snippets:
    for frame in range(30):
      name = f'{city}_{seq:06d}_{frame:06d}'
      expected.add(f'leftImg8bit_sequence/{split}/{city}/{name}_leftImg8bit.png')
      for kind in ('labelIds', 'instanceIds'):
        expected.add(f'hidden_gt/gtFine/{split}/{city}/{name}_gtFine_{kind}.png')
    name = f'{city}_{seq:06d}_000019'
    expected.add(f'leftImg8bit/{split}/{city}/{name}_leftImg8bit.png')
    for kind in ('labelIds', 'instanceIds', 'color'):
      expected.add(f'gtFine/{split}/{city}/{name}_gtFine_{kind}.png')
    expected.add(f'gtFine/cityscapes_panoptic_{split}/{name}_gtFine_panoptic.png')
  for split in ('train', 'val'):
    expected.add(f'gtFine/cityscapes_panoptic_{split}.json')
  for i in range(_EXTRA):
    name = f'synthburg_{i:06d}_000019'
    expected.add(f'leftImg8bit/train_extra/synthburg/{name}_leftImg8bit.png')
    for kind in ('labelIds', 'instanceIds'):
      expected.add(f'hidden_gt/gtFine/train_extra/synthburg/{name}_gtFine_{kind}.png')
  assert _files(root) == sorted(expected)


def test_images_and_label_formats(dataset):
  root, _ = dataset
  name = 'synthtown_000000_000019'
  image = Image.open(f'{root}/leftImg8bit/train/synthtown/{name}_leftImg8bit.png')
  assert (image.mode, image.size) == ('RGB', (_W, _H))
  assert Image.open(f'{root}/gtFine/train/synthtown/{name}_gtFine_labelIds.png'
                    ).mode == 'L'
  assert Image.open(f'{root}/gtFine/train/synthtown/{name}_gtFine_color.png'
                    ).mode == 'RGBA'
  inst = Image.open(f'{root}/gtFine/train/synthtown/{name}_gtFine_instanceIds.png')
  assert inst.mode.startswith('I')
  # The labeled frame of the sequence folder is the same image.
  seq = f'{root}/leftImg8bit_sequence/train/synthtown/{name}_leftImg8bit.png'
  with open(seq, 'rb') as a, open(image.filename, 'rb') as b:
    assert a.read() == b.read()


def test_label_ids_valid_and_all_train_classes_present(dataset):
  root, _ = dataset
  seen = set()
  for path in glob.glob(f'{root}/gtFine/*/*/*_labelIds.png'):
    values = set(np.unique(_read(path)).tolist())
    assert values <= _VALID_LABEL_IDS, path
    seen |= values
  assert _TRAIN_LABEL_IDS <= seen, sorted(_TRAIN_LABEL_IDS - seen)


def test_instance_ids_encode_cityscapes_instances(dataset):
  root, _ = dataset
  many_instances = False
  for path in glob.glob(f'{root}/hidden_gt/gtFine/*/*/*_instanceIds.png'):
    inst = _read(path).astype(np.int64)
    label = _read(path.replace('instanceIds', 'labelIds'))
    things = inst >= 1000
    np.testing.assert_array_equal(inst[things] // 1000, label[things])
    np.testing.assert_array_equal(inst[~things], label[~things])
    assert set(np.unique(label[things]).tolist()) <= _THING_IDS, path
    car_ids = np.unique(inst[label == 26])
    many_instances |= len(car_ids[car_ids >= 1000]) >= 2
  assert many_instances


def test_instance_keeps_its_id_and_class_over_a_snippet(dataset):
  root, _ = dataset
  classes = {}
  for path in glob.glob(
      f'{root}/hidden_gt/gtFine/train/synthtown/synthtown_000000_*_instanceIds.png'):
    for value in np.unique(_read(path)):
      if value >= 1000:
        classes.setdefault(int(value), set()).add(int(value) // 1000)
  assert len(classes) >= 5
  assert all(len(c) == 1 for c in classes.values())


def test_panoptic_json_matches_pngs(dataset):
  root, _ = dataset
  for split in ('train', 'val'):
    with open(f'{root}/gtFine/cityscapes_panoptic_{split}.json') as f:
      data = json.load(f)
    assert len(data['annotations']) == {'train': 4, 'val': 1}[split]
    for ann in data['annotations']:
      png = _read(f'{root}/gtFine/cityscapes_panoptic_{split}/{ann["file_name"]}'
                  ).astype(np.int64)
      ids = png[..., 0] + 256 * png[..., 1] + 65536 * png[..., 2]
      segments = {s['id']: s for s in ann['segments_info']}
      assert set(np.unique(ids[ids > 0]).tolist()) == set(segments)
      for seg_id, seg in segments.items():
        assert seg['area'] == int((ids == seg_id).sum())
        expected = seg_id // 1000 if seg_id >= 1000 else seg_id
        assert seg['category_id'] == expected


def test_ego_vehicle_fixed_within_and_varies_between_snippets(dataset):
  root, _ = dataset
  masks = []
  for city, seq in (('synthtown', 0), ('synthville', 0), ('synthtown', 1)):
    paths = sorted(glob.glob(f'{root}/hidden_gt/gtFine/train/{city}/'
                             f'{city}_{seq:06d}_*_labelIds.png'))
    assert len(paths) == 30
    frames = [_read(p) == 1 for p in paths]
    assert frames[0].sum() > 0
    for mask in frames[1:]:
      np.testing.assert_array_equal(mask, frames[0])
    masks.append(frames[0])
  assert not np.array_equal(masks[0], masks[1])
  assert not np.array_equal(masks[0], masks[2])


def test_objects_move_between_frames(dataset):
  root, _ = dataset
  base = f'{root}/hidden_gt/gtFine/val/synthcity/synthcity_000000'
  first = _read(f'{base}_000000_gtFine_instanceIds.png')
  last = _read(f'{base}_000029_gtFine_instanceIds.png')
  assert set(np.unique(first).tolist()) != set(np.unique(last).tolist())


def test_same_seed_same_bytes_and_resume(tmp_path):
  kwargs = dict(num_sequences=2, seed=7, height=32, width=64,
                frames_per_sequence=4, labeled_frame=2, extra_images=1,
                hidden_panoptic=True)
  a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
  writer.make_synthetic_cityscapes(a, num_workers=2, **kwargs)
  writer.make_synthetic_cityscapes(b, num_workers=1, **kwargs)
  files = _files(a)
  assert files == _files(b)
  for split in ('train', 'val', 'train_extra'):
    assert f'hidden_gt/gtFine/cityscapes_panoptic_{split}.json' in files
  for rel in files:
    with open(os.path.join(a, rel), 'rb') as fa, open(
        os.path.join(b, rel), 'rb') as fb:
      assert fa.read() == fb.read(), rel
  # A finished dataset returns at once; a lost file is re-made identically.
  assert writer.make_synthetic_cityscapes(a, **kwargs)['frames_rendered'] == 0
  lost = 'leftImg8bit_sequence/train/synthtown/synthtown_000000_000001_leftImg8bit.png'
  os.remove(os.path.join(a, lost))
  os.remove(os.path.join(a, 'DONE'))
  info = writer.make_synthetic_cityscapes(a, num_workers=1, **kwargs)
  assert info['frames_rendered'] == 1
  assert _files(a) == files
  with open(os.path.join(a, lost), 'rb') as fa, open(
      os.path.join(b, lost), 'rb') as fb:
    assert fa.read() == fb.read()
  with pytest.raises(ValueError, match='other arguments'):
    writer.make_synthetic_cityscapes(a, **dict(kwargs, seed=8))


def test_rejects_inconsistent_arguments(tmp_path):
  with pytest.raises(ValueError, match='do not sum'):
    writer.make_synthetic_cityscapes(str(tmp_path), 3, 0,
                                     split_sizes={'train': 1, 'val': 1})
  with pytest.raises(ValueError, match='labeled_frame'):
    writer.make_synthetic_cityscapes(str(tmp_path), 1, 0,
                                     frames_per_sequence=10, labeled_frame=19)
