"""CamVid (SegNet's 11-class copy) as records, with a labeled/unlabeled frame split.

CamVid gives a real, small, semantic-only test bed for Naive-Student: keep the labels
of every k-th frame of each sequence and treat the rest as unlabeled video frames
to pseudo-label. Layout (see /work/shared/data/camvid/README.md):

  <root>/train/<sequence>_[f]<frame>.jpg     <root>/trainannot/<sequence>_<frame>.png
  <root>/val/...                           <root>/valannot/...

Labels 0..10 are classes and 11 is void (`datasets.CAMVID_VOID_ID`); `decode` turns
them into panoptic ids class * label_divisor with no instances, so the same
`InputPipeline` (dataset_name='camvid') trains on them.
"""

import collections
import dataclasses
import glob
import os
import re
from typing import List

from official_naive_student.dataloaders import cityscapes_files

SPLITS = {'train': ('train', 'trainannot'), 'val': ('val', 'valannot')}
# '0016E5_07959', and '0006R0_f00930' (that sequence's frames carry an 'f').
_NAME_RE = re.compile(r'^(?P<seq>[^_]+)_[a-z]?(?P<frame>\d+)$')


@dataclasses.dataclass(frozen=True)
class CamVidSplit:
  """Records of a split: `labeled` keep their labels, `unlabeled` do not."""
  labeled: List[cityscapes_files.Record]
  unlabeled: List[cityscapes_files.Record]


def _split_records(root: str, split: str) -> List[cityscapes_files.Record]:
  image_folder, label_folder = SPLITS[split]
  image_dir = os.path.join(root, image_folder)
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f'{image_dir}: split folder not found')
  paths = sorted(glob.glob(os.path.join(image_dir, '*.jpg')) +
                 glob.glob(os.path.join(image_dir, '*.png')))
  if not paths:
    raise ValueError(f'{image_dir}: empty split, no .jpg or .png images')
  records = []
  for path in paths:
    image_id = os.path.splitext(os.path.basename(path))[0]
    match = _NAME_RE.match(image_id)
    if not match:
      raise ValueError(f'{path}: name is not <sequence>_<frame number>')
    label_path = os.path.join(root, label_folder, image_id + '.png')
    if not os.path.isfile(label_path):
      raise FileNotFoundError(f'{path}: image without label (missing '
                              f'{label_path})')
    records.append(cityscapes_files.Record(
        image_path=path, image_id=image_id, sequence_id=match['seq'],
        frame=int(match['frame']), split=split,
        label_format=cityscapes_files.LABEL_SEMANTIC, label_path=label_path))
  return records


def find_records(camvid_root: str, split: str = 'train',
                 keep_every_k: int = 1, offset: int = 0) -> CamVidSplit:
  """Records of `split` ('train', 'val' or a '+' union).

  Args:
    camvid_root: folder holding train/, trainannot/, val/, valannot/.
    split: split name(s).
    keep_every_k: within each sequence sorted by frame number, frames at
      positions offset, offset + k, ... keep their labels; the others become
      unlabeled frames. 1 keeps every label.
    offset: first kept position, in [0, keep_every_k).

  Returns:
    A CamVidSplit; both lists sorted by (sequence, frame).
  """
  if keep_every_k < 1 or not 0 <= offset < keep_every_k:
    raise ValueError(f'need keep_every_k >= 1 and 0 <= offset < keep_every_k, '
                     f'got {keep_every_k}, {offset}')
  names = [s.strip() for s in split.split('+') if s.strip()]
  unknown = [n for n in names if n not in SPLITS]
  if not names or unknown:
    raise ValueError(f'Unknown CamVid split {split!r}; known: {sorted(SPLITS)}')
  by_sequence = collections.defaultdict(list)
  for name in names:
    for record in _split_records(camvid_root, name):
      by_sequence[record.sequence_id].append(record)
  labeled, unlabeled = [], []
  for sequence in sorted(by_sequence):
    frames = sorted(by_sequence[sequence], key=lambda r: r.frame)
    for position, record in enumerate(frames):
      if position % keep_every_k == offset:
        labeled.append(record)
      else:
        unlabeled.append(dataclasses.replace(
            record, label_format=None, label_path=None))
  return CamVidSplit(labeled=labeled, unlabeled=unlabeled)
