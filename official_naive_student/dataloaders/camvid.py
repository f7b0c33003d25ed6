"""CamVid (SegNet's 11-class copy) as records, with a labeled/unlabeled frame split.

CamVid gives a real, small, semantic-only test bed for Naive-Student: keep the labels
of every k-th frame of each sequence and treat the rest as unlabeled video frames
to pseudo-label. Layout (see /work/shared/data/camvid/README.md):

  <root>/train/<sequence>_[f]<frame>.jpg     <root>/trainannot/<sequence>_<frame>.png
  <root>/val/...                           <root>/valannot/...

Labels 0..10 are classes and 11 is void (`datasets.CAMVID_VOID_ID`); `decode` turns
them into panoptic ids class * label_divisor with no instances, so the same
`InputPipeline` (dataset_name='camvid') trains on them.

Gin files bind the record lists through `camvid_labeled_records`,
`camvid_unlabeled_records` and `camvid_pseudo_labeled_records` (the unlabeled
frames with a Teacher's pseudo-labels). Their `camvid_root` defaults to
`DEFAULT_ROOT`, `../shared/data/camvid` next to the repository; gin/camvid/*.gin
pass `%CAMVID_ROOT`, so `--gin_bindings "CAMVID_ROOT='/path/to/camvid'"` moves it.
"""

import collections
import dataclasses
import glob
import os
import re
from typing import List, Optional

import gin

from official_naive_student.dataloaders import cityscapes_files

SPLITS = {'train': ('train', 'trainannot'), 'val': ('val', 'valannot')}
# '0016E5_07959', and '0006R0_f00930' (that sequence's frames carry an 'f').
_NAME_RE = re.compile(r'^(?P<seq>[^_]+)_[a-z]?(?P<frame>\d+)$')
# The repository's root (three levels above this file) and the shared data copy.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEFAULT_ROOT = os.path.normpath(os.path.join(_REPO_ROOT, '..', 'shared', 'data',
                                             'camvid'))


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


def _root(camvid_root: Optional[str]) -> str:
  return DEFAULT_ROOT if camvid_root is None else camvid_root


@gin.register
def camvid_labeled_records(camvid_root: Optional[str] = None,
                           split: str = 'train', keep_every_k: int = 4,
                           offset: int = 0) -> List[cityscapes_files.Record]:
  """The frames of `split` that keep their human labels (`find_records`).

  `camvid_root` None is `DEFAULT_ROOT`; keep_every_k=1 gives every frame (val).
  """
  return find_records(_root(camvid_root), split, keep_every_k, offset).labeled


@gin.register
def camvid_unlabeled_records(camvid_root: Optional[str] = None,
                             split: str = 'train', keep_every_k: int = 4,
                             offset: int = 0) -> List[cityscapes_files.Record]:
  """The frames of `split` whose labels are dropped: what a Teacher labels."""
  return find_records(_root(camvid_root), split, keep_every_k, offset).unlabeled


@gin.register
def camvid_dropped_label_records(camvid_root: Optional[str] = None,
                                 split: str = 'train', keep_every_k: int = 4,
                                 offset: int = 0
                                 ) -> List[cityscapes_files.Record]:
  """The unlabeled frames *with* the labels the split drops.

  Only for rating pseudo-labels (`label_quality.measure_against_records`);
  training on them would undo the semi-supervised split.
  """
  hidden = {r.image_id for r in camvid_unlabeled_records(
      camvid_root, split, keep_every_k, offset)}
  return [r for r in find_records(_root(camvid_root), split).labeled
          if r.image_id in hidden]


@gin.register
def camvid_pseudo_labeled_records(
    camvid_root: Optional[str] = None,
    panoptic_json: Optional[str] = None,
    split: str = 'train', keep_every_k: int = 4, offset: int = 0,
    include_labeled: bool = False) -> List[cityscapes_files.Record]:
  """The unlabeled frames with the pseudo-labels of a panoptic json.

  Args:
    camvid_root: the CamVid folder (None: `DEFAULT_ROOT`).
    panoptic_json: the pseudo-label json (`label_folder`), whose
      `category_id`s are CamVid's label ids; the Naive-Student loop binds it.
    split: split name(s), as in `find_records`.
    keep_every_k: as in `find_records`: the same k and offset as the Teacher's
      labeled records, so these are exactly the frames it labeled.
    offset: as in `find_records`.
    include_labeled: also return the labeled frames with their human labels.

  Returns:
    Records with LABEL_PANOPTIC labels (then the labeled ones, if asked), each
    group sorted by (sequence, frame).

  Raises:
    ValueError: no `panoptic_json`.
    FileNotFoundError: the json does not label one of the unlabeled frames.
  """
  if not panoptic_json:
    raise ValueError('camvid_pseudo_labeled_records needs panoptic_json (the '
                     'Naive-Student loop binds it to the pseudo-label json)')
  found = find_records(_root(camvid_root), split, keep_every_k, offset)
  records = cityscapes_files.with_panoptic_labels(found.unlabeled,
                                                  panoptic_json)
  return records + (found.labeled if include_labeled else [])
