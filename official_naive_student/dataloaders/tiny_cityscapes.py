"""Writes tiny Cityscapes-layout trees (real file formats, made-up content).

Tests and benchmarks of the data code need the exact Cityscapes folder layout,
file names and PNG modes without the 60 GB dataset: this module writes them with
a few frames each, so every split rule (30-frame snippets with the annotated frame
at index 19, several snippets in one `<city>_<seq>`, train_extra with gtCoarse) is
exercised. Label maps hold stuff, two car instances, a person instance, a person
crowd group (instanceIds value 24 < 1000), a caravan (void in train ids) and an
ego-vehicle band whose height differs per snippet, so ego-car masks are told apart.
"""

import os
import zlib
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

# Annotated (fine) frames of each split, as '<city>_<seq>_<frame>'.
FINE_IDS = {
    'train': ('aachen_000000_000019', 'aachen_000001_000019',
              'bochum_000000_000313'),
    'val': ('frankfurt_000000_000294', 'frankfurt_000000_000576'),
    'test': ('berlin_000000_000019',),
    'train_extra': ('augsburg_000000_000019',),
}


def _rng(name: str) -> np.random.Generator:
  return np.random.default_rng(zlib.crc32(name.encode()))


def ego_rows(image_id: str, height: int) -> int:
  """Height of the ego-vehicle band at the bottom of an annotated frame."""
  return max(1, height // 16) + zlib.crc32(image_id.encode()) % 3


def label_maps(image_id: str, height: int, width: int):
  """(labelIds uint8 [H, W], instanceIds int32 [H, W]) of an annotated frame."""
  h, w = height, width
  label = np.full((h, w), 7, np.uint8)                  # road
  label[:h // 3] = 23                                   # sky
  label[h // 3:h // 2, :w // 4] = 11                    # building
  instance = label.astype(np.int32)
  shift = zlib.crc32(image_id.encode()) % max(1, w // 8)
  boxes = [  # (label id, instance value, y0, y1, x0, x1)
      (26, 26001, h // 3, 2 * h // 3, w // 4 + shift, w // 2 + shift),
      (26, 26002, h // 2, 3 * h // 4, 5 * w // 8, 7 * w // 8),
      (24, 24001, h // 3, h // 2, w // 16, w // 8),
      (24, 24, h // 2, 2 * h // 3, w // 16, w // 8),    # crowd group
      (29, 29001, h // 4, h // 3, 7 * w // 8, w),       # caravan: void
  ]
  for label_id, value, y0, y1, x0, x1 in boxes:
    label[y0:y1, x0:x1] = label_id
    instance[y0:y1, x0:x1] = value
  ego = ego_rows(image_id, h)
  label[h - ego:] = 1
  instance[h - ego:] = 1
  return label, instance


def _image(name: str, height: int, width: int) -> np.ndarray:
  return _rng(name).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(array: np.ndarray, path: str, mode: str = None) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode).save(path, compress_level=1)


def write_tree(root: str, height: int = 32, width: int = 64,
               sequences: bool = True,
               splits: Sequence[str] = tuple(FINE_IDS)) -> Dict[str, List[str]]:
  """Writes leftImg8bit/, gtFine/, gtCoarse/ and leftImg8bit_sequence/ files.

  Args:
    root: the Cityscapes root to create.
    height: frame height.
    width: frame width.
    sequences: also write the 30-frame snippets of train, val and test.
    splits: which of FINE_IDS to write.

  Returns:
    split folder -> image ids written, plus '<folder>_sequence' entries.
  """
  written = {}
  for folder in splits:
    written[folder] = list(FINE_IDS[folder])
    for image_id in FINE_IDS[folder]:
      city = image_id.split('_')[0]
      _save(_image(image_id, height, width), os.path.join(
          root, 'leftImg8bit', folder, city, image_id + '_leftImg8bit.png'))
      label, instance = label_maps(image_id, height, width)
      gt = 'gtCoarse' if folder == 'train_extra' else 'gtFine'
      base = os.path.join(root, gt, folder, city, f'{image_id}_{gt}_')
      _save(label, base + 'labelIds.png', 'L')
      if gt == 'gtFine':
        _save(instance.astype(np.uint16), base + 'instanceIds.png')
      if sequences and folder != 'train_extra':
        city, seq, frame = image_id.rsplit('_', 2)
        for f in range(int(frame) - 19, int(frame) + 11):
          frame_id = f'{city}_{seq}_{f:06d}'
          written.setdefault(folder + '_sequence', []).append(frame_id)
          _save(_image(frame_id, height, width), os.path.join(
              root, 'leftImg8bit_sequence', folder, city,
              frame_id + '_leftImg8bit.png'))
  return written
