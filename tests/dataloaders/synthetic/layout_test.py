"""Checks of the Cityscapes naming and split bookkeeping."""

from official_naive_student.dataloaders.synthetic import layout


def test_frame_name_and_paths():
  name = layout.frame_name('synthtown', 3, 19)
  assert name == 'synthtown_000003_000019'
  assert layout.gt_path('/r', 'val', 'synthtown', name, 'labelIds') == (
      '/r/gtFine/val/synthtown/synthtown_000003_000019_gtFine_labelIds.png')
  assert layout.panoptic_paths('/r', 'val') == (
      '/r/gtFine/cityscapes_panoptic_val.json', '/r/gtFine/cityscapes_panoptic_val')


def test_default_split_sizes():
  assert layout.default_split_sizes(1) == {'train': 1, 'val': 0}
  assert layout.default_split_sizes(2) == {'train': 1, 'val': 1}
  assert layout.default_split_sizes(50) == {'train': 40, 'val': 10}


def test_snippets_deal_cities_and_keys():
  snippets = layout.snippets({'train': 3, 'val': 1}, extra_images=2)
  assert [(s.split, s.city, s.seq, s.key) for s in snippets] == [
      ('train', 'synthtown', 0, 0), ('train', 'synthville', 0, 1),
      ('train', 'synthtown', 1, 2), ('val', 'synthcity', 0, 3),
      ('train_extra', 'synthburg', 0, 0), ('train_extra', 'synthburg', 1, 1)]
