"""Writes predictions in the file formats that cityscapesscripts' evaluators read.

So that a model's output can be scored by the official scripts (and by
`cityscapes_eval`, which reads the same files), per frame:
  * semantic: `<dir>/<image_id>_labelIds.png`, one channel of label ids (not train
    ids; void becomes the dataset's void label id, Cityscapes' 0 or CamVid's
    11, as 255 crashes the pixel evaluator);
  * instances: `<dir>/<image_id>_instances.txt` with lines
    `masks/<image_id>_<k>.png <labelId> <confidence>` and 1-bit mask PNGs;
  * panoptic: `<dir>/<image_id>_panoptic.png` (RGB, id = R + 256 G + 65536 B) and one
    COCO json for all frames whose `category_id` is the label id.
Each evaluator searches its folder for `<image_id>*`, so give each kind its own
folder. Every file is written to a temporary name and renamed into place, so a
killed job never leaves a half-written file that an evaluator would read.
"""

import json
import os
import re
from typing import Dict, List, Mapping, Sequence

import numpy as np
from PIL import Image

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student import panoptic_rgb

# Cityscapes '<city>_<seq>_<frame>', or CamVid '<sequence>_[f]<frame>'.
_IMAGE_ID = re.compile(r'^[^_\s/\\]+_(\d+_\d+|[a-z]?\d+)$')
# The segment id of a segment whose label id * label_divisor + instance is 0
# (CamVid's class 0, sky), since id 0 is void in COCO panoptic PNGs. Never
# another segment's id: label ids are < 256 and instances < label_divisor.
ZERO_SEGMENT_ID = (1 << 24) - 1


def check_image_id(image_id: str) -> str:
  """Returns `image_id` if it reads `<city>_<seq>_<frame>`, else raises.

  CamVid ids (`0016E5_07959`, `0006R0_f00930`) pass too: no evaluator glob
  `<image_id>*` of one matches another's files.
  """
  if not _IMAGE_ID.match(image_id):
    raise ValueError(f'{image_id!r} is not a Cityscapes image id '
                     '(<city>_<sequence>_<frame>, e.g. frankfurt_000000_000294)'
                     ' nor a CamVid one (<sequence>_<frame>)')
  return image_id


def save_png(array: np.ndarray, path: str, mode: str = None):
  """Saves an image array as PNG atomically, with fast (level 1) compression.

  Label maps and masks compressed at PIL's default level 6 are about half the
  size but take twice as long to decode (zlib's inflate copies its short
  repeats byte by byte): on 2048x1024 results, level 1 saves every evaluator,
  official or not, ~9 ms per panoptic PNG and ~0.4 ms per mask, and is
  faster to write.
  """
  image = Image.fromarray(array) if mode is None else Image.fromarray(
      array).convert(mode)
  with file_io.atomic_file(path) as tmp:
    image.save(tmp, format='PNG', compress_level=1)


def save_text(text: str, path: str):
  """Writes a text file atomically."""
  file_io.atomic_write_text(path, text)


def _label_id_lut(dataset: datasets.DatasetInfo) -> np.ndarray:
  """[256] train id -> label id; void (and unknown ids) -> the void label id."""
  lut = np.full((256,), dataset.void_label_id, np.uint8)
  lut[:dataset.num_classes] = dataset.train_id_to_label_id
  return lut


def write_semantic(out_dir: str, image_id: str, semantic: np.ndarray,
                   dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> str:
  """Writes [H, W] train ids as a label-id PNG; returns its path."""
  check_image_id(image_id)
  semantic = np.asarray(semantic)
  if semantic.ndim != 2:
    raise ValueError(f'{image_id}: semantic must be [H, W], got {semantic.shape}')
  bad = (semantic >= dataset.num_classes) & (semantic != dataset.ignore_label)
  if bad.any() or (semantic < 0).any():
    raise ValueError(f'{image_id}: unknown train id in semantic prediction')
  path = os.path.join(out_dir, f'{image_id}_labelIds.png')
  save_png(_label_id_lut(dataset)[semantic.astype(np.int64) & 255], path)
  return path


def _segments(panoptic: np.ndarray, dataset: datasets.DatasetInfo):
  """(panoptic ids, inverse index) of the non-void segments of one frame."""
  panoptic = np.asarray(panoptic)
  if panoptic.ndim != 2:
    raise ValueError(f'panoptic must be [H, W], got {panoptic.shape}')
  ids, inverse = np.unique(panoptic, return_inverse=True)
  train_ids = ids // dataset.label_divisor
  unknown = (train_ids >= dataset.num_classes) & (
      train_ids != dataset.ignore_label)
  if unknown.any() or (ids < 0).any():
    raise ValueError(f'unknown panoptic id {int(ids[unknown | (ids < 0)][0])}')
  return ids, inverse.reshape(panoptic.shape), train_ids


def write_instances(out_dir: str, image_id: str, panoptic: np.ndarray,
                    scores: Mapping[int, float],
                    dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> str:
  """Writes each thing instance of a panoptic prediction as a scored mask.

  Args:
    out_dir: the instance results folder (the evaluator's CITYSCAPES_RESULTS).
    image_id: `<city>_<seq>_<frame>`.
    panoptic: [H, W] ids train_id * label_divisor + instance; instances are the
      thing segments with instance > 0.
    scores: panoptic id -> confidence, for every instance.
    dataset: label space.

  Returns:
    The path of the txt file.
  """
  check_image_id(image_id)
  ids, inverse, train_ids = _segments(panoptic, dataset)
  lines = []
  for index, (pan_id, train_id) in enumerate(zip(ids, train_ids)):
    if (train_id not in dataset.thing_train_ids
        or pan_id % dataset.label_divisor == 0):
      continue
    if int(pan_id) not in scores:
      raise ValueError(f'{image_id}: no score for instance {int(pan_id)}')
    rel = f'masks/{image_id}_{int(pan_id)}.png'
    mask = inverse == index
    save_png(mask, os.path.join(out_dir, rel), mode='1')
    label_id = dataset.train_id_to_label_id[train_id]
    lines.append(f'{rel} {label_id} {float(scores[int(pan_id)])!r}\n')
  path = os.path.join(out_dir, f'{image_id}_instances.txt')
  save_text(''.join(lines), path)
  return path


def write_panoptic_png(out_dir: str, image_id: str, panoptic: np.ndarray,
                       dataset: datasets.DatasetInfo = datasets.CITYSCAPES
                       ) -> Dict[str, object]:
  """Writes one frame's panoptic PNG; returns its COCO annotation.

  Segment id = label_id * label_divisor + instance, and ZERO_SEGMENT_ID where
  that is 0 (stuff of label id 0, e.g. CamVid's sky), so it is never 0 (void);
  every distinct panoptic id is one segment. A thing class with instance 0 is a
  crowd region in this project's convention (`decode`): its segment gets
  iscrowd 1, so it reads back as crowd (predictions never contain one).
  Collect the annotations and pass them to `write_panoptic_json`.
  """
  check_image_id(image_id)
  ids, inverse, train_ids = _segments(panoptic, dataset)
  thing = set(dataset.thing_train_ids)
  segment_ids = np.zeros(ids.shape, np.int64)
  segments = []
  areas = np.bincount(inverse.ravel(), minlength=ids.size)
  for index, (pan_id, train_id) in enumerate(zip(ids, train_ids)):
    if train_id == dataset.ignore_label:
      continue
    label_id = dataset.train_id_to_label_id[train_id]
    segment_ids[index] = (label_id * dataset.label_divisor
                          + pan_id % dataset.label_divisor) or ZERO_SEGMENT_ID
    segments.append({'id': int(segment_ids[index]), 'category_id': int(label_id),
                     'iscrowd': int(train_id in thing
                                    and pan_id % dataset.label_divisor == 0),
                     'area': int(areas[index])})
  rgb = panoptic_rgb.ids_to_rgb(segment_ids[inverse])
  file_name = f'{image_id}_panoptic.png'
  save_png(rgb, os.path.join(out_dir, file_name))
  return {'image_id': image_id, 'file_name': file_name,
          'segments_info': segments}


def write_panoptic_json(json_path: str, annotations: Sequence[Dict[str, object]],
                        dataset: datasets.DatasetInfo = datasets.CITYSCAPES):
  """Writes the COCO panoptic json that goes with `write_panoptic_png` files."""
  thing = set(dataset.thing_train_ids)
  categories = [{'id': int(label_id), 'name': name,
                 'isthing': int(train_id in thing)}
                for train_id, (label_id, name) in enumerate(
                    zip(dataset.train_id_to_label_id, dataset.class_names))]
  images = [{'id': a['image_id'], 'file_name': a['file_name']}
            for a in annotations]
  save_text(json.dumps({'images': images, 'annotations': list(annotations),
                        'categories': categories}), json_path)


class ResultsWriter:
  """Writes all three kinds for a stream of frames; `close()` writes the json.

  Any of the folders may be None to skip that kind. The panoptic json is
  `<panoptic_dir>.json`, next to the PNG folder, as in the gtFine layout.
  """

  def __init__(self, semantic_dir: str = None, instance_dir: str = None,
               panoptic_dir: str = None,
               dataset: datasets.DatasetInfo = datasets.CITYSCAPES):
    self.semantic_dir = semantic_dir
    self.instance_dir = instance_dir
    self.panoptic_dir = panoptic_dir
    self.dataset = dataset
    self._annotations: List[Dict[str, object]] = []

  @property
  def panoptic_json(self) -> str:
    return self.panoptic_dir.rstrip('/\\') + '.json'

  def write(self, image_id: str, semantic: np.ndarray = None,
            panoptic: np.ndarray = None, scores: Mapping[int, float] = None):
    """Writes one frame: semantic train ids, panoptic ids, instance scores."""
    if self.semantic_dir and semantic is not None:
      write_semantic(self.semantic_dir, image_id, semantic, self.dataset)
    if self.instance_dir and panoptic is not None:
      write_instances(self.instance_dir, image_id, panoptic, scores or {},
                      self.dataset)
    if self.panoptic_dir and panoptic is not None:
      self._annotations.append(
          write_panoptic_png(self.panoptic_dir, image_id, panoptic, self.dataset))

  def close(self):
    if self.panoptic_dir:
      write_panoptic_json(self.panoptic_json, self._annotations, self.dataset)
