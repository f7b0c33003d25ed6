"""How good are the pseudo-labels? PQ and mIoU against ground truth the Student never sees.

Two sources of that ground truth:
- the synthetic generator's `hidden_gt/`, which labels every frame of every
  snippet (`measure_pseudo_label_quality`);
- human labels that a semi-supervised split hides from the Teacher, e.g. the
  3 of every 4 CamVid train frames whose labels are dropped
  (`measure_against_records`).
AP is left out: hard pseudo-labels carry no confidences to rank.
"""

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from PIL import Image

from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.evaluation import panoptic_quality
from official_naive_student.evaluation import semantic_iou


def hidden_instance_ids(hidden_gt_root: str, split: Optional[str],
                        image_id: str) -> np.ndarray:
  """The instanceIds ground truth of `image_id` (split None: any split)."""
  city, _, _ = cityscapes_files.parse_image_id(image_id)
  name = f'{image_id}_gtFine_instanceIds.png'
  splits = [split] if split else sorted(
      os.listdir(os.path.join(hidden_gt_root, 'gtFine')))
  for s in splits:
    path = os.path.join(hidden_gt_root, 'gtFine', s, city, name)
    if os.path.isfile(path):
      with Image.open(path) as image:
        return np.asarray(image).astype(np.int64)
  raise FileNotFoundError(f'{hidden_gt_root}: no gtFine/{split or "*"}/{city}/'
                          f'{name} for pseudo-label {image_id}')


def _measure(json_path: str, ground_truth: Callable[[str], np.ndarray],
             dataset: datasets.DatasetInfo) -> Dict[str, object]:
  """Scores every frame of a panoptic json against `ground_truth(image_id)`."""
  pq = panoptic_quality.PanopticQuality(dataset)
  miou = semantic_iou.SemanticIoU(dataset)
  annotations = cityscapes_files.read_panoptic_json(json_path)
  label_ids = decode.panoptic_category_ids(dataset)
  for image_id, (png, segments) in sorted(annotations.items()):
    pred = decode.decode_panoptic_png(png, segments, dataset,
                                      valid_label_ids=label_ids)
    gt = ground_truth(image_id)
    pq.update(gt, pred, png)
    miou.update(gt // dataset.label_divisor, pred // dataset.label_divisor, png)
  result = pq.result()
  out = {k: result[k] for k in ('PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff')}
  semantic = miou.result()
  out['mIoU'] = semantic['mIoU']
  # As the evaluator reports them: no thing classes (CamVid) gives None, not NaN.
  out = {k: (None if v is None or not np.isfinite(v) else float(v))
         for k, v in out.items()}
  out['num_frames'] = len(annotations)
  out['class_IoU'] = semantic['per_class']
  # Labeled / true pixels per class (on non-void ground truth): below 1, the
  # labels shrink the class, and a Student trained on them learns it smaller.
  c = dataset.num_classes
  true, labeled = miou.confusion[:c, :].sum(1), miou.confusion[:c, :c].sum(0)
  out['class_pixel_ratio'] = {
      name: (float(labeled[i] / true[i]) if true[i] else None)
      for i, name in enumerate(dataset.class_names)}
  return out


def measure_pseudo_label_quality(
    json_path: str, hidden_gt_root: str, split: Optional[str] = None,
    dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> Dict[str, object]:
  """PQ and mIoU of merged pseudo-labels against the hidden ground truth.

  Ego-car pixels have no train id, hence are void in the ground truth and never
  counted.

  Args:
    json_path: merged pseudo-labels (`label_folder.panoptic_json_path`).
    hidden_gt_root: root holding gtFine/<split>/<city>/*_instanceIds.png.
    split: gtFine split folder ('train', 'val'); None searches all.
    dataset: label space.

  Returns:
    {'PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff', 'mIoU'} (percent),
    'num_frames', and per class 'class_IoU' (percent) and 'class_pixel_ratio'
    (labeled / true pixels).
  """
  return _measure(json_path, lambda image_id: (
      panoptic_quality.panoptic_from_instance_ids(
          hidden_instance_ids(hidden_gt_root, split, image_id), dataset)),
                  dataset)


def measure_against_records(
    json_path: str, records: Sequence[cityscapes_files.Record],
    dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> Dict[str, object]:
  """Like `measure_pseudo_label_quality`, with the human labels of `records`.

  Raises:
    KeyError: a labeled frame has no record with a human label.
  """
  by_id = {r.image_id: r for r in records if r.label_format is not None}

  def ground_truth(image_id):
    if image_id not in by_id:
      raise KeyError(f'pseudo-label {image_id}: no human label among the '
                     f'{len(by_id)} records to measure against')
    return decode.decode_label(by_id[image_id], dataset)

  return _measure(json_path, ground_truth, dataset)
