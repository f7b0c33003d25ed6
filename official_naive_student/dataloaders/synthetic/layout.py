"""File names and folders of the synthetic dataset, in the exact Cityscapes layout.

Real Cityscapes names a frame `<city>_<seq:06d>_<frame:06d>`; each snippet is
30 frames (000000..000029 for the first snippets of a city) whose frame 19 is
the annotated one. We keep that so every Cityscapes reader works unchanged:

  leftImg8bit_sequence/<split>/<city>/<name>_leftImg8bit.png   every frame
  leftImg8bit/<split>/<city>/<name>_leftImg8bit.png            labeled frame
  gtFine/<split>/<city>/<name>_gtFine_{labelIds,instanceIds,color}.png
  gtFine/cityscapes_panoptic_<split>.json + cityscapes_panoptic_<split>/
  leftImg8bit/train_extra/<city>/<name>_leftImg8bit.png        unlabeled extras
  hidden_gt/gtFine/<split>/<city>/<name>_gtFine_{labelIds,instanceIds}.png

`hidden_gt/` holds labels of every frame (and of the extras) to measure
pseudo-label quality; it is a Cityscapes ground-truth root of its own
(CITYSCAPES_DATASET=<out>/hidden_gt), and training never reads it.
"""

import dataclasses
import os
from typing import Dict, List, Mapping, Tuple

SPLITS = ('train', 'val')
EXTRA_SPLIT = 'train_extra'
# Cities per split; sequences of a split are dealt to its cities in turn.
CITIES: Dict[str, Tuple[str, ...]] = {
    'train': ('synthtown', 'synthville'),
    'val': ('synthcity',),
    EXTRA_SPLIT: ('synthburg',),
}
HIDDEN_GT_DIR = 'hidden_gt'
INFO_FILE = 'dataset_info.json'
README_FILE = 'README.txt'
DONE_FILE = 'DONE'


@dataclasses.dataclass(frozen=True)
class Snippet:
  """One snippet (or one extra image) to generate.

  Attributes:
    split: 'train', 'val' or 'train_extra'.
    city: city name.
    seq: sequence number within the city (the `<seq>` of the file name).
    key: index over all snippets of its kind; seeds its random generator, so
      the content of snippet `key` does not depend on the worker that makes it.
  """
  split: str
  city: str
  seq: int
  key: int

  @property
  def is_extra(self) -> bool:
    return self.split == EXTRA_SPLIT


def default_split_sizes(num_sequences: int) -> Dict[str, int]:
  """About 80 % train, 20 % val, and at least one of each from 2 snippets on."""
  val = 0 if num_sequences < 2 else max(1, round(0.2 * num_sequences))
  return {'train': num_sequences - val, 'val': val}


def snippets(split_sizes: Mapping[str, int], extra_images: int) -> List[Snippet]:
  """All snippets (train, then val, then extras) with their cities and keys."""
  out = []
  key = 0
  for split in SPLITS:
    cities = CITIES[split]
    for i in range(split_sizes.get(split, 0)):
      out.append(Snippet(split, cities[i % len(cities)], i // len(cities), key))
      key += 1
  cities = CITIES[EXTRA_SPLIT]
  for i in range(extra_images):
    out.append(Snippet(EXTRA_SPLIT, cities[i % len(cities)],
                       i // len(cities), i))
  return out


def frame_name(city: str, seq: int, frame: int) -> str:
  """Cityscapes frame prefix, e.g. 'synthtown_000003_000019'."""
  return f'{city}_{seq:06d}_{frame:06d}'


def sequence_image_path(root: str, split: str, city: str, name: str) -> str:
  return os.path.join(root, 'leftImg8bit_sequence', split, city,
                      f'{name}_leftImg8bit.png')


def image_path(root: str, split: str, city: str, name: str) -> str:
  return os.path.join(root, 'leftImg8bit', split, city,
                      f'{name}_leftImg8bit.png')


def gt_path(root: str, split: str, city: str, name: str, kind: str) -> str:
  """`kind` is 'labelIds', 'instanceIds' or 'color'."""
  return os.path.join(root, 'gtFine', split, city, f'{name}_gtFine_{kind}.png')


def hidden_gt_root(root: str) -> str:
  return os.path.join(root, HIDDEN_GT_DIR)


def panoptic_paths(gt_root: str, split: str) -> Tuple[str, str]:
  """(json, png folder) that cityscapesscripts' createPanopticImgs writes."""
  base = os.path.join(gt_root, 'gtFine', f'cityscapes_panoptic_{split}')
  return base + '.json', base
