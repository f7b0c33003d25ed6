"""Decodes and validates images and labels into the project's panoptic id maps.

Every label format the project reads becomes one int32 map in train-id space,
`train_id * label_divisor + instance_id`, with `ignore_label * label_divisor` on void
(see `common.py`). The instance numbering follows DeepLab2's
`data/build_cityscapes_data.py`: within each thing class, segments are numbered
1, 2, ... in increasing segment id; crowd regions (Cityscapes instanceIds values
below 1000 on a thing class, or `iscrowd` segments) and stuff get instance id 0, so
targets treat a thing pixel with instance 0 as crowd. Both gtFine PNG pairs and
cityscapesscripts panoptic PNG + json give identical maps for the same frame.

Everything is numpy + PIL (no TensorFlow), so the TFRecord writer's worker
processes import it cheaply, and every check raises ValueError naming the file:
corrupt or truncated files, wrong PNG modes, size mismatches and label values that
are not in the dataset's label space. The checks run once, at conversion time,
so no bad label reaches training.
"""

import io
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from official_naive_student import datasets
from official_naive_student import panoptic_rgb
from official_naive_student.dataloaders import cityscapes_files

_INSTANCE_MODES = ('I', 'I;16', 'I;16B', 'I;16L')


def _open(path, modes: Sequence[str], kind: str,
          name: Optional[str] = None) -> np.ndarray:
  """Fully decodes an image file (a path or a file object) and checks its mode."""
  try:
    with Image.open(path) as img:
      img.load()  # Decodes everything: a truncated file fails here.
      mode, fmt = img.mode, img.format
      array = np.asarray(img)
  except FileNotFoundError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises UnidentifiedImageError, OSError ('truncated'), SyntaxError or
    # zlib errors depending on the damage; all mean the same to the caller.
    path = name or path
    raise ValueError(f'{path}: corrupt or truncated {kind} ({e})') from e
  if mode not in modes:
    path = name or path
    raise ValueError(f'{path}: {kind} has PIL mode {mode} ({fmt}), expected '
                     f'one of {list(modes)}')
  return array


def decode_image(path: str) -> np.ndarray:
  """Reads a PNG or JPEG as uint8 [H, W, 3] RGB."""
  return _open(path, ('RGB',), 'image').astype(np.uint8, copy=False)


def decode_image_bytes(data: bytes, name: str = '<bytes>') -> np.ndarray:
  """`decode_image` for in-memory bytes (e.g. a TFRecord's image feature)."""
  image = _open(io.BytesIO(data), ('RGB',), 'image', name)
  return image.astype(np.uint8, copy=False)


def _check_values(values: np.ndarray, valid: Iterable[int], path: str,
                  what: str) -> None:
  present = np.unique(values)
  bad = np.setdiff1d(present, np.fromiter(valid, np.int64))
  if bad.size:
    raise ValueError(f'{path}: {what} {bad[:10].tolist()} not in the label '
                     'space')


def _check_same_size(a: np.ndarray, b: np.ndarray, path_a: str,
                     path_b: str) -> None:
  if a.shape[:2] != b.shape[:2]:
    raise ValueError(f'{path_b}: label {b.shape[0]}x{b.shape[1]} != '
                     f'{a.shape[0]}x{a.shape[1]} of {path_a}')


def _number_instances(segment_ids: np.ndarray, train_ids: np.ndarray,
                      is_instance: np.ndarray, label_divisor: int,
                      path: str) -> np.ndarray:
  """Panoptic value of each (sorted) segment: train_id * divisor + index.

  Instance indices count 1, 2, ... per train id in increasing segment id, over
  the segments where `is_instance`; the others get index 0.
  """
  order = np.argsort(segment_ids, kind='stable')
  index = np.zeros(segment_ids.shape, np.int64)
  counts = {}
  for i in order:
    if is_instance[i]:
      counts[train_ids[i]] = counts.get(train_ids[i], 0) + 1
      index[i] = counts[train_ids[i]]
  if index.size and index.max() >= label_divisor:
    raise ValueError(f'{path}: {index.max()} instances of one class, more '
                     f'than label_divisor {label_divisor} allows')
  return (train_ids.astype(np.int64) * label_divisor + index).astype(np.int32)


def decode_label_ids(path: str) -> np.ndarray:
  """A Cityscapes `_labelIds` PNG (gtFine or gtCoarse) -> checked uint8 [H, W]."""
  label_ids = _open(path, ('L',), 'labelIds PNG')
  _check_values(label_ids, datasets.CITYSCAPES_VALID_LABEL_IDS, path,
                'label ids')
  return label_ids


def decode_gtfine(label_path: str, instance_path: str,
                  info: datasets.DatasetInfo = datasets.CITYSCAPES
                  ) -> np.ndarray:
  """gtFine `_labelIds` + `_instanceIds` PNGs -> int32 [H, W] panoptic map.

  instanceIds holds label_id * 1000 + k for an instance and the bare label id
  elsewhere (including crowd groups of thing classes, which get instance 0).
  Label ids without a train id (ego vehicle, caravan, ...) become void.
  """
  label_ids = decode_label_ids(label_path)
  instance_ids = _open(instance_path, _INSTANCE_MODES,
                       'instanceIds PNG').astype(np.int32)
  _check_same_size(label_ids, instance_ids, label_path, instance_path)
  semantic_of_instance = np.where(instance_ids >= 1000, instance_ids // 1000,
                                  instance_ids)
  disagree = semantic_of_instance != label_ids
  if disagree.any():
    y, x = np.argwhere(disagree)[0]
    raise ValueError(
        f'{instance_path}: {int(disagree.sum())} pixels disagree with '
        f'{label_path}, e.g. ({y}, {x}): {instance_ids[y, x]} vs label id '
        f'{label_ids[y, x]}')
  lut = info.label_id_to_train_id_lut().astype(np.int64)
  segment_ids, inverse = np.unique(instance_ids, return_inverse=True)
  train_ids = lut[np.where(segment_ids >= 1000, segment_ids // 1000,
                           segment_ids)]
  is_instance = (segment_ids >= 1000) & np.isin(train_ids, info.thing_train_ids)
  values = _number_instances(segment_ids, train_ids, is_instance,
                             info.label_divisor, instance_path)
  return values[inverse.reshape(instance_ids.shape)]


def decode_panoptic_png(path: str,
                        segments: Sequence[cityscapes_files.Segment],
                        info: datasets.DatasetInfo = datasets.CITYSCAPES,
                        category_id_space: str = 'label_id',
                        valid_label_ids: Iterable[int] = (
                            datasets.CITYSCAPES_VALID_LABEL_IDS)
                        ) -> np.ndarray:
  """cityscapesscripts panoptic PNG + its segments -> int32 panoptic map.

  Args:
    path: RGB PNG, segment id = R + 256 G + 65536 B; 0 (or any id not in
      `segments` whose pixels are absent) is void.
    segments: the image's `segments_info`.
    info: the label space.
    category_id_space: 'label_id' (Cityscapes label ids, the official format)
      or 'train_id'.
    valid_label_ids: the label ids a 'label_id' category may take.

  Returns:
    int32 [H, W] panoptic map (see module docstring).
  """
  ids = panoptic_rgb.rgb_to_ids(_open(path, ('RGB',), 'panoptic PNG'))
  segment_ids = np.array([s.id for s in segments], np.int64)
  if len(set(segment_ids.tolist())) != len(segment_ids):
    raise ValueError(f'{path}: duplicate segment ids in its json entry')
  categories = np.array([s.category_id for s in segments], np.int64)
  if category_id_space == 'label_id':
    _check_values(categories, valid_label_ids, path, 'segment category ids')
    train_ids = info.label_id_to_train_id_lut().astype(np.int64)[categories]
  elif category_id_space == 'train_id':
    _check_values(categories, list(range(info.num_classes)) +
                  [info.ignore_label], path, 'segment category ids')
    train_ids = categories
  else:
    raise ValueError(f'category_id_space {category_id_space!r} is not '
                     "'label_id' or 'train_id'")
  is_instance = (np.isin(train_ids, info.thing_train_ids) &
                 ~np.array([bool(s.iscrowd) for s in segments], bool))
  values = _number_instances(segment_ids, train_ids, is_instance,
                             info.label_divisor, path)
  # Segment lookup by sorted id; pixels of id 0 with no segment are void.
  order = np.argsort(segment_ids)
  sorted_ids = segment_ids[order]
  pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(order) - 1, 0))
  found = (sorted_ids[pos] == ids) if len(order) else np.zeros(ids.shape, bool)
  unknown = ~found & (ids != 0)
  if unknown.any():
    missing = np.unique(ids[unknown])[:10].tolist()
    raise ValueError(f'{path}: segment ids {missing} are in the PNG but not '
                     'in its json entry')
  counts = np.bincount(pos[found], minlength=len(order)) if len(order) else []
  for k, i in enumerate(order):
    area = segments[i].area
    if area >= 0 and counts[k] != area:
      raise ValueError(f'{path}: segment {segments[i].id} has {counts[k]} '
                       f'pixels, its json entry says area {area}')
  void = np.int32(info.ignore_label * info.label_divisor)
  if not len(order):
    return np.full(ids.shape, void, np.int32)
  return np.where(found, values[order][pos], void).astype(np.int32)


def decode_semantic_png(path: str, info: datasets.DatasetInfo,
                        void_id: int) -> np.ndarray:
  """Single-channel class PNG (CamVid) -> panoptic map class * divisor.

  Values 0..num_classes-1 are train ids, `void_id` becomes `ignore_label`; there
  are no instances.
  """
  labels = _open(path, ('L', 'P'), 'semantic PNG').astype(np.int32)
  _check_values(labels, list(range(info.num_classes)) + [void_id], path,
                'class ids')
  labels = np.where(labels == void_id, info.ignore_label, labels)
  return (labels * info.label_divisor).astype(np.int32)


def panoptic_category_ids(info: datasets.DatasetInfo) -> frozenset:
  """Label ids a panoptic json of `info`'s label space may name.

  Cityscapes' (and the synthetic video's) 0..33, of which only some have a
  train id; elsewhere (CamVid) exactly the classes' label ids.
  """
  if info.train_id_to_label_id == datasets.CITYSCAPES.train_id_to_label_id:
    return datasets.CITYSCAPES_VALID_LABEL_IDS
  return frozenset(info.train_id_to_label_id)


def decode_label(record: cityscapes_files.Record,
                 info: datasets.DatasetInfo) -> Optional[np.ndarray]:
  """The record's label as an int32 panoptic map, or None if unlabeled."""
  if record.label_format is None:
    return None
  if record.label_format == cityscapes_files.LABEL_GTFINE:
    return decode_gtfine(record.label_path, record.instance_path, info)
  if record.label_format == cityscapes_files.LABEL_PANOPTIC:
    return decode_panoptic_png(record.label_path, record.segments or (), info,
                               record.category_id_space,
                               panoptic_category_ids(info))
  if record.label_format == cityscapes_files.LABEL_SEMANTIC:
    return decode_semantic_png(record.label_path, info, datasets.CAMVID_VOID_ID)
  raise ValueError(f'{record.image_path}: unknown label format '
                   f'{record.label_format!r}')


def load_example(record: cityscapes_files.Record,
                 info: datasets.DatasetInfo
                 ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
  """Decodes and cross-checks a record: (uint8 [H,W,3], int32 [H,W] or None)."""
  image = decode_image(record.image_path)
  panoptic = decode_label(record, info)
  if panoptic is not None:
    _check_same_size(image, panoptic, record.image_path, record.label_path)
  return image, panoptic


def record_error(record: cityscapes_files.Record, error: BaseException) -> str:
  """One line that names the file of `record` behind `error`.

  The decoders' errors already start with their file; anything else (a missing
  file, an unexpected exception) gets the record's image path in front, so a
  failure deep inside tf.data or a validation report always says which file.
  """
  if isinstance(error, FileNotFoundError) and error.filename:
    return f'{error.filename}: missing file'
  text = str(error).strip().splitlines()[0] if str(error).strip() else ''
  text = text or type(error).__name__
  paths = (record.image_path, record.label_path, record.instance_path)
  if any(p and text.startswith(p) for p in paths):
    return text
  return f'{record.image_path}: {type(error).__name__}: {text}'


def encode_panoptic_png(panoptic: np.ndarray) -> bytes:
  """int32 panoptic map -> lossless RGB PNG bytes (id = R + 256 G + 65536 B).

  The TFRecord label format: smaller than raw int32 and decodable in-graph with
  `tf.io.decode_png(channels=3)`.
  """
  buffer = io.BytesIO()
  Image.fromarray(panoptic_rgb.ids_to_rgb(panoptic), 'RGB').save(
      buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def example_payload(record: cityscapes_files.Record,
                    info: datasets.DatasetInfo) -> dict:
  """Validates a record and returns what its TFRecord example stores.

  The image bytes are kept as they are on disk (no re-encoding); the label is
  decoded, checked against the image and re-encoded with `encode_panoptic_png`.
  Plain Python types only, so worker processes can send it back cheaply.

  Returns:
    dict with image_bytes, image_format ('png' or 'jpeg'), height, width,
    label_png (b'' when unlabeled), image_id, sequence_id, frame.
  """
  with open(record.image_path, 'rb') as f:
    image_bytes = f.read()
  if image_bytes[:4] == b'\x89PNG':
    image_format = 'png'
  elif image_bytes[:2] == b'\xff\xd8':
    image_format = 'jpeg'
  else:
    raise ValueError(f'{record.image_path}: image is neither PNG nor JPEG')
  image = decode_image_bytes(image_bytes, record.image_path)
  panoptic = decode_label(record, info)
  if panoptic is not None:
    _check_same_size(image, panoptic, record.image_path, record.label_path)
  return {
      'image_bytes': image_bytes,
      'image_format': image_format,
      'height': int(image.shape[0]),
      'width': int(image.shape[1]),
      'label_png': b'' if panoptic is None else encode_panoptic_png(panoptic),
      'image_id': record.image_id,
      'sequence_id': record.sequence_id,
      'frame': int(record.frame),
  }


def shard_task(task: Tuple[int, cityscapes_files.Record, str]) -> tuple:
  """A TFRecord writer's worker step; here so workers never import TensorFlow.

  Args:
    task: (shard index, record, dataset name).

  Returns:
    (shard index, image id, payload or None, error message or None).
  """
  shard, record, dataset_name = task
  try:
    payload = example_payload(record, datasets.get_dataset_info(dataset_name))
    return shard, record.image_id, payload, None
  except (OSError, ValueError) as e:
    return shard, record.image_id, None, str(e)
