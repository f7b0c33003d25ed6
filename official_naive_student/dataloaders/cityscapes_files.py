"""Finds (image, label, sequence) records in a Cityscapes tree, failing loudly.

Everything downstream (decoding, TFRecord conversion, pseudo-labeling, ego-car masks)
starts from a list of `Record`s, so the layout rules of Cityscapes live here once:

  leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png          fine images
  gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png
  leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png 30-frame snippets
  leftImg8bit/train_extra/<city>/...   (gtCoarse only gives the ego-car reference)

Each video snippet of `leftImg8bit_sequence` holds 30 frames whose 20th (index 19) is
the annotated fine frame, so a sequence frame maps to its snippet's labeled frame
(`Record.labeled_image_id`); the ego-car mask of that frame voids the whole snippet
(Naive-Student, Sec. 4). Pseudo-labels are read in exactly the format of
cityscapesscripts' `csCreatePanopticImgs` (a COCO-style json + RGB PNGs), so a student
reads them with the same code as human labels.

Split names: 'train-fine', 'val-fine', 'test-fine', 'train-sequence',
'val-sequence', 'test-sequence', 'train-extra', and unions joined by '+'
('train-fine+val-fine' is trainval). Errors name the offending path.
"""

import collections
import dataclasses
import glob
import json
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Values of `Record.label_format`.
LABEL_GTFINE = 'gtfine'          # labelIds PNG + instanceIds PNG.
LABEL_PANOPTIC = 'panoptic_png'  # RGB panoptic PNG + json segments.
LABEL_SEMANTIC = 'semantic_png'  # single-channel class PNG (CamVid).

SNIPPET_LENGTH = 30
LABELED_FRAME_INDEX = 19

_IMAGE_SUFFIX = '_leftImg8bit.png'
_NAME_RE = re.compile(r'^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$')


class Segment(collections.namedtuple(
    'Segment', ['id', 'category_id', 'iscrowd', 'area'])):
  """One entry of a panoptic json's `segments_info` (area -1 when absent)."""


@dataclasses.dataclass(frozen=True)
class Record:
  """One frame and where its label lives.

  Attributes:
    image_path: the RGB image (PNG or JPEG).
    image_id: '<city>_<seq>_<frame>' (CamVid: '<sequence>_<frame>').
    sequence_id: '<city>_<seq>' (CamVid: the sequence name).
    frame: frame number within the sequence.
    split: the single split the record came from, e.g. 'train-fine'.
    label_format: one of LABEL_* or None for an unlabeled frame.
    label_path: labelIds PNG, panoptic PNG or semantic PNG, per `label_format`.
    instance_path: instanceIds PNG (LABEL_GTFINE only).
    segments: panoptic segments (LABEL_PANOPTIC only).
    category_id_space: 'label_id' or 'train_id', what `Segment.category_id` is.
    labeled_image_id: image id of the annotated frame of this frame's snippet
      (itself for fine frames); None where unknown.
    reference_label_path: labelIds PNG of that annotated frame (gtFine, or
      gtCoarse for train_extra), the source of the ego-car mask; None if absent.
  """
  image_path: str
  image_id: str
  sequence_id: str
  frame: int
  split: str = ''
  label_format: Optional[str] = None
  label_path: Optional[str] = None
  instance_path: Optional[str] = None
  segments: Optional[Tuple[Segment, ...]] = None
  category_id_space: str = 'label_id'
  labeled_image_id: Optional[str] = None
  reference_label_path: Optional[str] = None

  @property
  def has_label(self) -> bool:
    return self.label_format is not None


@dataclasses.dataclass(frozen=True)
class _SplitLayout:
  image_dir: str            # relative to the Cityscapes root
  folder: str               # split folder name under image_dir
  fine_labels: bool         # gtFine labels are the split's labels
  sequence: bool            # frames of 30-frame snippets
  reference_dir: Optional[str]  # where the ego-car reference labelIds live
  reference_suffix: str = '_gtFine_labelIds.png'


SPLITS: Dict[str, _SplitLayout] = {
    'train-fine': _SplitLayout('leftImg8bit', 'train', True, False, 'gtFine'),
    'val-fine': _SplitLayout('leftImg8bit', 'val', True, False, 'gtFine'),
    # The released test labels are placeholders: never use them as labels.
    'test-fine': _SplitLayout('leftImg8bit', 'test', False, False, None),
    'train-sequence': _SplitLayout(
        'leftImg8bit_sequence', 'train', False, True, 'gtFine'),
    'val-sequence': _SplitLayout(
        'leftImg8bit_sequence', 'val', False, True, 'gtFine'),
    'test-sequence': _SplitLayout(
        'leftImg8bit_sequence', 'test', False, True, None),
    'train-extra': _SplitLayout(
        'leftImg8bit', 'train_extra', False, False, 'gtCoarse',
        '_gtCoarse_labelIds.png'),
}


def parse_image_id(image_id: str, path: str = '') -> Tuple[str, str, int]:
  """'aachen_000000_000019' -> ('aachen', '000000', 19); errors name `path`."""
  match = _NAME_RE.match(image_id)
  if not match:
    raise ValueError(f'{path or image_id}: name is not '
                     '<city>_<seq:6 digits>_<frame:6 digits>')
  return match['city'], match['seq'], int(match['frame'])


def split_names(split: str) -> List[str]:
  """'train-fine+val-fine' -> ['train-fine', 'val-fine'], checked."""
  names = [s.strip() for s in split.split('+') if s.strip()]
  if not names:
    raise ValueError(f'Empty split name {split!r}')
  for name in names:
    if name not in SPLITS:
      raise ValueError(f'Unknown split {name!r}; known: {sorted(SPLITS)}')
  if len(set(names)) != len(names):
    raise ValueError(f'Split {split!r} names a split twice')
  return names


def _list_images(root: str, layout: _SplitLayout) -> List[str]:
  split_dir = os.path.join(root, layout.image_dir, layout.folder)
  if not os.path.isdir(split_dir):
    raise FileNotFoundError(f'{split_dir}: split folder not found')
  paths = sorted(glob.glob(os.path.join(split_dir, '*', '*' + _IMAGE_SUFFIX)))
  if not paths:
    raise ValueError(f'{split_dir}: empty split, no */*{_IMAGE_SUFFIX} images')
  return paths


def _image_id(path: str) -> str:
  return os.path.basename(path)[:-len(_IMAGE_SUFFIX)]


def snippet_labeled_frames(
    frames: Sequence[int],
    labeled_frames: Sequence[int] = ()) -> Dict[int, int]:
  """Maps each frame of one `<city>_<seq>` to its snippet's annotated frame.

  With known annotated frames L (from the fine split), frame f belongs to the
  snippet [L - 19, L + 10]. Without them, consecutive runs of frame numbers are cut
  into 30-frame snippets whose 20th frame is the annotated one, which is how the
  released `leftImg8bit_sequence` folders are laid out.

  Args:
    frames: frame numbers present in the sequence folder.
    labeled_frames: annotated frame numbers of the same `<city>_<seq>`.

  Returns:
    frame -> annotated frame. Frames that fit no snippet are left out.
  """
  frames = sorted(set(frames))
  result = {}
  if labeled_frames:
    for label in sorted(set(labeled_frames)):
      lo = label - LABELED_FRAME_INDEX
      hi = lo + SNIPPET_LENGTH - 1
      for f in frames:
        if lo <= f <= hi:
          result.setdefault(f, label)
    return result
  run = []
  for f in frames + [None]:
    if run and (f is None or f != run[-1] + 1):
      for start in range(0, len(run), SNIPPET_LENGTH):
        chunk = run[start:start + SNIPPET_LENGTH]
        if len(chunk) > LABELED_FRAME_INDEX:
          for g in chunk:
            result[g] = chunk[LABELED_FRAME_INDEX]
      run = []
    if f is not None:
      run.append(f)
  return result


def _reference_path(root: str, layout: _SplitLayout, city: str,
                    image_id: str) -> Optional[str]:
  if layout.reference_dir is None:
    return None
  path = os.path.join(root, layout.reference_dir, layout.folder, city,
                      image_id + layout.reference_suffix)
  return path if os.path.isfile(path) else None


def _fine_records(root: str, name: str, layout: _SplitLayout) -> List[Record]:
  records = []
  for path in _list_images(root, layout):
    image_id = _image_id(path)
    city, seq, frame = parse_image_id(image_id, path)
    kwargs = {}
    if layout.fine_labels:
      base = os.path.join(root, 'gtFine', layout.folder, city, image_id)
      label_path = base + '_gtFine_labelIds.png'
      instance_path = base + '_gtFine_instanceIds.png'
      for p in (label_path, instance_path):
        if not os.path.isfile(p):
          raise FileNotFoundError(f'{path}: image without label (missing {p})')
      kwargs = dict(label_format=LABEL_GTFINE, label_path=label_path,
                    instance_path=instance_path)
    records.append(Record(
        image_path=path, image_id=image_id, sequence_id=f'{city}_{seq}',
        frame=frame, split=name, labeled_image_id=image_id,
        reference_label_path=_reference_path(root, layout, city, image_id),
        **kwargs))
  return records


def _sequence_records(root: str, name: str,
                      layout: _SplitLayout) -> List[Record]:
  paths = _list_images(root, layout)
  by_sequence = collections.defaultdict(list)
  for path in paths:
    city, seq, frame = parse_image_id(_image_id(path), path)
    by_sequence[(city, seq)].append((frame, path))
  # Annotated frames come from the fine split's images when they are present.
  labeled = collections.defaultdict(list)
  fine_dir = os.path.join(root, 'leftImg8bit', layout.folder)
  for path in glob.glob(os.path.join(fine_dir, '*', '*' + _IMAGE_SUFFIX)):
    city, seq, frame = parse_image_id(_image_id(path), path)
    labeled[(city, seq)].append(frame)
  records = []
  for (city, seq), frames in sorted(by_sequence.items()):
    mapping = snippet_labeled_frames([f for f, _ in frames],
                                     labeled.get((city, seq), ()))
    for frame, path in sorted(frames):
      if frame not in mapping:
        raise ValueError(f'{path}: frame belongs to no 30-frame snippet '
                         f'(annotated frames {sorted(labeled[(city, seq)])})')
      labeled_id = f'{city}_{seq}_{mapping[frame]:06d}'
      records.append(Record(
          image_path=path, image_id=_image_id(path),
          sequence_id=f'{city}_{seq}', frame=frame, split=name,
          labeled_image_id=labeled_id,
          reference_label_path=_reference_path(root, layout, city, labeled_id)))
  return records


def read_panoptic_json(json_path: str, label_root: Optional[str] = None
                       ) -> Dict[str, Tuple[str, Tuple[Segment, ...]]]:
  """Reads a cityscapesscripts-style panoptic json.

  Args:
    json_path: the json with 'annotations': [{'image_id', 'file_name',
      'segments_info': [{'id', 'category_id', 'iscrowd', 'area'}]}].
    label_root: folder of the PNGs; defaults to the json path without '.json'
      (where `csCreatePanopticImgs` and the pseudo-labeler put them).

  Returns:
    image id -> (panoptic PNG path, segments).
  """
  if label_root is None:
    label_root = os.path.splitext(json_path)[0]
  try:
    with open(json_path) as f:
      data = json.load(f)
    annotations = data['annotations']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f'{json_path}: not a panoptic json ({e})') from e
  result = {}
  for ann in annotations:
    try:
      segments = tuple(
          Segment(int(s['id']), int(s['category_id']), int(s.get('iscrowd', 0)),
                  int(s.get('area', -1))) for s in ann['segments_info'])
      image_id, file_name = ann['image_id'], ann['file_name']
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'{json_path}: bad annotation {str(ann)[:200]} ({e})'
                       ) from e
    if image_id in result:
      raise ValueError(f'{json_path}: image id {image_id} annotated twice')
    result[image_id] = (os.path.join(label_root, file_name), segments)
  return result


def with_panoptic_labels(records: Sequence[Record], json_path: str,
                         label_root: Optional[str] = None,
                         category_id_space: str = 'label_id',
                         require_labels: bool = True) -> List[Record]:
  """Replaces the labels of `records` by those of a panoptic json (pseudo-labels).

  Args:
    records: records of any split.
    json_path: panoptic json (see `read_panoptic_json`).
    label_root: folder of its PNGs (default: next to the json).
    category_id_space: 'label_id' (cityscapesscripts' default and the official
      evaluators' format) or 'train_id' (its `--use-train-id` variant).
    require_labels: raise for a record the json does not annotate; otherwise such
      records come back unlabeled.

  Returns:
    The records with LABEL_PANOPTIC labels.
  """
  if category_id_space not in ('label_id', 'train_id'):
    raise ValueError(f'category_id_space {category_id_space!r} is not '
                     "'label_id' or 'train_id'")
  annotations = read_panoptic_json(json_path, label_root)
  result = []
  for record in records:
    if record.image_id not in annotations:
      if require_labels:
        raise FileNotFoundError(f'{record.image_path}: image without label '
                                f'(no annotation for {record.image_id} in '
                                f'{json_path})')
      result.append(dataclasses.replace(
          record, label_format=None, label_path=None, instance_path=None,
          segments=None))
      continue
    png_path, segments = annotations[record.image_id]
    if not os.path.isfile(png_path):
      raise FileNotFoundError(f'{record.image_path}: image without label '
                              f'(missing {png_path} named in {json_path})')
    result.append(dataclasses.replace(
        record, label_format=LABEL_PANOPTIC, label_path=png_path,
        instance_path=None, segments=segments,
        category_id_space=category_id_space))
  return result


def find_records(cityscapes_root: str, split: str,
                 panoptic_json: Optional[str] = None,
                 label_root: Optional[str] = None,
                 category_id_space: str = 'label_id',
                 require_labels: bool = True) -> List[Record]:
  """All records of `split` (a name or a '+' union), sorted by image id.

  Args:
    cityscapes_root: folder holding leftImg8bit/, gtFine/, leftImg8bit_sequence/.
    split: e.g. 'train-fine', 'train-fine+val-fine', 'train-sequence'.
    panoptic_json: optional panoptic json (pseudo-labels, or the output of
      `csCreatePanopticImgs`) whose labels replace the split's own.
    label_root: folder of that json's PNGs (default: next to the json).
    category_id_space: see `with_panoptic_labels`.
    require_labels: with `panoptic_json`, every record must be annotated.

  Returns:
    The records; fine train/val records carry gtFine labels, the others none
    unless `panoptic_json` is given.

  Raises:
    FileNotFoundError: a split folder or a label file is missing.
    ValueError: an empty split, a badly named file, or no root (a gin file's
      `%gin.REQUIRED` root that the command did not bind).

  A frame found in two splits of a union (the annotated frame of a snippet is in
  both 'train-fine' and 'train-sequence') is kept once, from the split named
  first, so 'train-fine+train-sequence' keeps the human labels.
  """
  if not isinstance(cityscapes_root, (str, os.PathLike)):
    raise ValueError(
        f'find_records: cityscapes_root is {cityscapes_root!r}, not a path; '
        "bind the dataset root, e.g. --gin_bindings \"CITYSCAPES_ROOT='/data/cityscapes'\"")
  by_id = {}
  for name in split_names(split):
    layout = SPLITS[name]
    if layout.sequence:
      found = _sequence_records(cityscapes_root, name, layout)
    else:
      found = _fine_records(cityscapes_root, name, layout)
    for record in found:
      by_id.setdefault(record.image_id, record)
  records = [by_id[k] for k in sorted(by_id)]
  if panoptic_json:
    records = with_panoptic_labels(records, panoptic_json, label_root,
                                   category_id_space, require_labels)
  return records


def mix_records(parts: Sequence[Sequence[Record]],
                shares: Optional[Sequence[float]] = None) -> List[Record]:
  """Concatenates record lists, repeating each to about its share of an epoch.

  A Student can train on its pseudo-labels mixed with the few human labels
  (e.g. `shares=(0.5, 0.5)`): without repeats, 14 labeled frames would be 3% of
  a 534-frame epoch. Each part is repeated a whole number of times (at least
  once), so every record keeps its own label; shares are matched as closely
  as that allows.

  Raises:
    ValueError: empty parts, or shares that do not match them.
  """
  parts = [list(p) for p in parts]
  if not parts or any(not p for p in parts):
    raise ValueError('mix_records: every part needs at least one record')
  if shares is None:
    shares = [len(p) for p in parts]
  if len(shares) != len(parts) or any(s <= 0 for s in shares):
    raise ValueError(f'mix_records: {len(parts)} parts need as many positive '
                     f'shares, got {list(shares)}')
  total = max(len(p) / s for p, s in zip(parts, shares))
  out = []
  for part, share in zip(parts, shares):
    out.extend(part * max(1, round(total * share / len(part))))
  return out


def mix_pseudo_labels(panoptic_json: str,
                      pseudo_records: Optional[Callable] = None,
                      other_records: Sequence[Record] = (),
                      shares: Optional[Sequence[float]] = None) -> List[Record]:
  """`mix_records` of `pseudo_records(panoptic_json=...)` and `other_records`.

  A Student's records as a function of its pseudo-label json
  (`PanopticDeepLabTask.pseudo_label_records`), mixed with e.g. the human
  labels.
  """
  if pseudo_records is None:
    raise ValueError('mix_pseudo_labels needs pseudo_records')
  return mix_records([pseudo_records(panoptic_json=panoptic_json),
                      other_records], shares)
