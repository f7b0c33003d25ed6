"""Streaming mean IoU that equals cityscapesscripts' pixel-level evaluator.

`evalPixelLevelSemanticLabeling` fills a label-id confusion matrix and scores a class
c as tp / (tp + fp + fn), where fn counts every gt-c pixel not predicted c (also
those predicted as a void label id) and fp counts pixels predicted c whose gt is a
non-void class other than c. Classes whose denominator is 0 are NaN and leave the
mean. In train-id space (void = one extra row and column) the same sums give the
same numbers, so this accumulator works on train ids, the model's output, and keeps
a [C + 1, C + 1] confusion matrix filled with one `np.bincount` per frame.
"""

from typing import Dict, Optional

import numpy as np

from official_naive_student import datasets


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_label: int = 255,
                     name: str = 'prediction') -> np.ndarray:
  """Counts (gt, pred) train-id pairs of one frame.

  Args:
    gt: [H, W] integer train ids in [0, num_classes) or `ignore_label`.
    pred: [H, W] integer train ids, same value range.
    num_classes: C.
    ignore_label: the void train id; it becomes row / column C.
    name: what `pred` is, for error messages (e.g. its file name).

  Returns:
    [C + 1, C + 1] int64 matrix, rows gt, columns prediction.

  Raises:
    ValueError: on a shape mismatch or an id outside the valid range.
  """
  if gt.shape != pred.shape:
    raise ValueError(f'{name}: size {pred.shape} != ground truth {gt.shape}')
  lut = np.full((max(256, ignore_label + 1),), -1, np.int64)
  lut[:num_classes] = np.arange(num_classes)
  lut[ignore_label] = num_classes
  width = num_classes + 1
  # Ids index a small lookup table; anything outside it is reported below.
  for array, what in ((gt, 'ground truth'), (pred, name)):
    if array.size and (array.min() < 0 or array.max() >= lut.size):
      raise ValueError(f'{what}: unknown train id {int(array.max())}')
  joint = np.bincount(
      (gt.astype(np.intp) * lut.size + pred).ravel(),
      minlength=lut.size * lut.size).reshape(lut.size, lut.size)
  return fold_confusion(joint, lut, width, name)


def fold_confusion(joint: np.ndarray, lut: np.ndarray, width: int,
                   name: str) -> np.ndarray:
  """Maps a confusion matrix over raw ids to one over classes via `lut`.

  Args:
    joint: [K, K] counts over raw ids (gt rows, prediction columns).
    lut: [K] raw id -> class index in [0, width), or -1 for an unknown id.
    width: number of class indices (train classes + void).
    name: the prediction's name, for error messages.

  Returns:
    [width, width] int64 matrix.

  Raises:
    ValueError: when a count falls on an unknown id.
  """
  rows, cols = np.nonzero(joint)
  bad = (lut[rows] < 0) | (lut[cols] < 0)
  if bad.any():
    if (lut[rows[bad]] < 0).any():
      raise ValueError(f'ground truth of {name}: unknown id '
                       f'{int(rows[bad][lut[rows[bad]] < 0][0])}')
    raise ValueError(f'{name}: unknown id {int(cols[bad][0])}')
  out = np.zeros((width, width), np.int64)
  np.add.at(out, (lut[rows], lut[cols]), joint[rows, cols])
  return out


def label_id_confusion(gt_label_ids: np.ndarray, pred_label_ids: np.ndarray,
                       dataset: datasets.DatasetInfo = datasets.CITYSCAPES,
                       valid_label_ids=datasets.CITYSCAPES_VALID_LABEL_IDS,
                       name: str = 'prediction') -> np.ndarray:
  """Confusion over train ids from two dataset label-id maps (the PNG format).

  Any id in `valid_label_ids` without a train id counts as void, as in the
  official evaluator; ids outside it raise (the official one crashes on them).

  Args:
    gt_label_ids: [H, W] integer label ids (e.g. a gtFine `_labelIds.png`).
    pred_label_ids: [H, W] integer label ids.
    dataset: gives the label id -> train id mapping.
    valid_label_ids: label ids allowed in either map.
    name: the prediction's name (file), for error messages.

  Returns:
    [C + 1, C + 1] int64 matrix over train ids, void last.
  """
  if gt_label_ids.shape != pred_label_ids.shape:
    raise ValueError(f'{name}: size {pred_label_ids.shape[:2]} != ground truth '
                     f'{gt_label_ids.shape[:2]}')
  if pred_label_ids.ndim != 2:
    raise ValueError(f'{name}: expected a single-channel image, got shape '
                     f'{pred_label_ids.shape}')
  if gt_label_ids.dtype == np.uint8 and pred_label_ids.dtype == np.uint8:
    # Interleaved bytes read as little-endian uint16 are gt * 256 + pred,
    # without arithmetic on the pixels.
    size = 256
    pair = np.empty(gt_label_ids.shape + (2,), np.uint8)
    pair[..., 0] = pred_label_ids
    pair[..., 1] = gt_label_ids
    joint_ids = pair.view('<u2')
  else:
    for array, what in ((gt_label_ids, f'ground truth of {name}'),
                        (pred_label_ids, name)):
      if array.size and array.min() < 0:
        raise ValueError(f'{what}: unknown label id {int(array.min())}')
    size = int(max(gt_label_ids.max(), pred_label_ids.max(), 255)) + 1
    joint_ids = gt_label_ids.astype(np.intp) * size + pred_label_ids
  joint = np.bincount(joint_ids.ravel(), minlength=size * size)
  c = dataset.num_classes
  lut = np.full((size,), -1, np.int64)
  for label_id in valid_label_ids:
    lut[label_id] = c
  for train_id, label_id in enumerate(dataset.train_id_to_label_id):
    lut[label_id] = train_id
  return fold_confusion(joint.reshape(size, size), lut, c + 1, name)


class SemanticIoU:
  """Accumulates a confusion matrix over frames; `result()` gives (m)IoU.

  Usage in an eval loop:
    metric = SemanticIoU(datasets.CITYSCAPES)
    for gt, pred in frames:
      metric.update(gt, pred)       # [H, W] train ids, void = ignore_label
    metric.result()['mIoU']         # percent
  """

  def __init__(self, dataset: datasets.DatasetInfo = datasets.CITYSCAPES):
    self._dataset = dataset
    width = dataset.num_classes + 1
    self.confusion = np.zeros((width, width), np.int64)

  def reset(self):
    self.confusion[:] = 0

  def update(self, gt: np.ndarray, pred: np.ndarray,
             name: str = 'prediction'):
    """Adds one frame of train ids ([H, W], void = ignore_label)."""
    self.add_confusion(confusion_matrix(
        np.asarray(gt), np.asarray(pred), self._dataset.num_classes,
        self._dataset.ignore_label, name))

  def add_confusion(self, confusion: np.ndarray):
    """Adds a [C + 1, C + 1] matrix (e.g. computed in a worker process)."""
    self.confusion += confusion

  def class_iou(self) -> np.ndarray:
    """[C] IoU in [0, 1]; NaN where a class is neither in gt nor predicted."""
    c = self._dataset.num_classes
    conf = self.confusion
    tp = np.diag(conf)[:c].astype(np.float64)
    fn = conf[:c, :].sum(axis=1) - tp          # includes pixels predicted void
    fp = conf[:c, :c].sum(axis=0) - tp         # only on non-void gt
    denom = tp + fp + fn
    with np.errstate(invalid='ignore', divide='ignore'):
      return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

  def result(self) -> Dict[str, object]:
    """Returns {'mIoU': percent, 'per_class': {name: percent or None}}."""
    iou = self.class_iou()
    valid = ~np.isnan(iou)
    miou = float(iou[valid].mean()) * 100 if valid.any() else float('nan')
    per_class: Dict[str, Optional[float]] = {
        name: (None if np.isnan(v) else float(v) * 100)
        for name, v in zip(self._dataset.class_names, iou)}
    return {'mIoU': miou, 'per_class': per_class}
