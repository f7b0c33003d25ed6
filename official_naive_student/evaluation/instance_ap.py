"""Streaming Cityscapes instance AP / AP50, equal to `evalInstanceLevelSemanticLabeling`.

The official rules, copied here (cityscapesscripts 2.3.0, no distance criteria):
  * classes: labels with instances that are not ignored in evaluation (person, rider,
    car, truck, bus, train, motorcycle, bicycle); predictions of other labels and
    empty masks are dropped;
  * gt comes from an `instanceIds` map (label_id * 1000 + k for instances, label_id
    for stuff, void and groups); gt instances under 100 px and groups (id < 1000)
    are neither hits nor misses;
  * at each overlap threshold t in 0.50:0.05:0.95, a prediction matches a gt
    instance of its class when IoU > t; of several matches the best score is the
    hit and the others are false positives; a prediction matching nothing (not
    even a group or small instance) is a false positive unless more than t of its
    pixels lie on void labels (decided on the instanceIds values), groups or small
    instances of its class, groups and small instances counting twice if both;
  * precision / recall at every unique score plus a (recall 0, precision 1) point,
    integrated with the official step rule; a class without gt leaves the mean and
    one with gt but no prediction scores 0.

Per frame only the overlaps are computed (one `np.bincount` for a disjoint
instance map, or one per mask); the curves are built from them at the end.
"""

from typing import Dict, Iterable, List, Mapping, NamedTuple, Sequence, Union

import numpy as np
from cityscapesscripts.helpers import labels as cs_labels

from official_naive_student import datasets

INSTANCE_LABEL_IDS = tuple(l.id for l in cs_labels.labels
                           if l.hasInstances and not l.ignoreInEval)
INSTANCE_CLASS_NAMES = tuple(cs_labels.id2label[i].name
                             for i in INSTANCE_LABEL_IDS)
VOID_LABEL_IDS = tuple(l.id for l in cs_labels.labels if l.ignoreInEval)
OVERLAPS = np.arange(0.5, 1., 0.05)
MIN_REGION_SIZE = 100
_KNOWN_LABEL_IDS = frozenset(cs_labels.id2label)


class IndexedInstanceIds(NamedTuple):
  """A gt instanceIds map with its present values numbered 0..V-1.

  Computed once per frame and shared by the instance matching and, in
  `cityscapes_eval`, the panoptic ground truth, which both need it.

  Attributes:
    values: [V] present instanceIds values, ascending.
    pixels: [V] pixel count of each value.
    compact: [H, W] int32 position of each pixel's value in `values`.
    cls: [V] instance class index of each value (-1: not an evaluated class).
    void: [V] whether the value is a void label (ignoreInEval).
  """
  values: np.ndarray
  pixels: np.ndarray
  compact: np.ndarray
  cls: np.ndarray
  void: np.ndarray


def index_instance_ids(gt_instance_ids: np.ndarray) -> IndexedInstanceIds:
  """Numbers the values of a Cityscapes instanceIds map (one bincount)."""
  gt_instance_ids = np.asarray(gt_instance_ids)
  if (gt_instance_ids.size and gt_instance_ids.dtype.kind == 'i'
      and int(gt_instance_ids.min()) < 0):
    raise ValueError(f'negative instance id {int(gt_instance_ids.min())}')
  counts = np.bincount(gt_instance_ids.ravel())
  values = np.nonzero(counts)[0]
  lut = np.zeros((counts.size,), np.int32)
  lut[values] = np.arange(values.size, dtype=np.int32)
  label = np.where(values < 1000, values, values // 1000)
  cls = np.full(values.shape, -1, np.int64)
  for k, label_id in enumerate(INSTANCE_LABEL_IDS):
    cls[label == label_id] = k
  void = np.isin(values, VOID_LABEL_IDS)
  return IndexedInstanceIds(values, counts[values],
                            np.take(lut, gt_instance_ids), cls, void)


def _frame_matches(values, gt_pixels, cls, void, overlaps: np.ndarray,
                   pred_cls: np.ndarray, scores: np.ndarray
                   ) -> Dict[str, np.ndarray]:
  """Packs one frame's gt instances, predictions and their overlaps.

  `overlaps` is [P, G]: pixels of prediction p on gt value g (all gt values).
  """
  keep = (pred_cls >= 0) & (overlaps.sum(axis=1) > 0)
  overlaps, pred_cls, scores = overlaps[keep], pred_cls[keep], scores[keep]
  gt_keep = np.nonzero(cls >= 0)[0]
  gt_index = np.full(values.shape, -1, np.int64)
  gt_index[gt_keep] = np.arange(gt_keep.size)
  same = cls[None, :] == pred_cls[:, None]
  pair_pred, pair_value = np.nonzero(same & (overlaps > 0))
  return {
      'gt_class': cls[gt_keep], 'gt_id': values[gt_keep],
      'gt_pixels': gt_pixels[gt_keep],
      'pred_class': pred_cls, 'pred_score': scores.astype(np.float64),
      'pred_pixels': overlaps.sum(axis=1),
      'pred_void': overlaps[:, void].sum(axis=1),
      'pair_pred': pair_pred, 'pair_gt': gt_index[pair_value],
      'pair_inter': overlaps[pair_pred, pair_value],
  }


def _label_classes(label_ids: Sequence[int], name: str) -> np.ndarray:
  """Instance class index of each label id (-1 for labels not evaluated)."""
  out = np.full((len(label_ids),), -1, np.int64)
  for i, label_id in enumerate(label_ids):
    if int(label_id) not in _KNOWN_LABEL_IDS:
      raise ValueError(f'{name}: unknown label id {label_id}')
    if int(label_id) in INSTANCE_LABEL_IDS:
      out[i] = INSTANCE_LABEL_IDS.index(int(label_id))
  return out


def match_instance_map(gt_instance_ids: np.ndarray, pred_instances: np.ndarray,
                       label_ids: Sequence[int], scores: Sequence[float],
                       name: str = 'prediction') -> Dict[str, np.ndarray]:
  """Overlaps of one frame whose predictions do not overlap each other.

  Args:
    gt_instance_ids: [H, W] Cityscapes instanceIds values.
    pred_instances: [H, W] integers; 0 no prediction, i > 0 prediction i - 1.
    label_ids: [N] Cityscapes label id (not train id) of each prediction.
    scores: [N] confidence of each prediction.
    name: the prediction's name, for error messages.

  Returns:
    The frame's match record, for `InstanceAP.add_matches`.
  """
  if gt_instance_ids.shape != pred_instances.shape:
    raise ValueError(f'{name}: size {pred_instances.shape} != ground truth '
                     f'{gt_instance_ids.shape}')
  values, gt_pixels, compact, cls, void = index_instance_ids(gt_instance_ids)
  n = len(label_ids)
  if pred_instances.size and (pred_instances.min() < 0 or
                              pred_instances.max() > n):
    raise ValueError(f'{name}: instance index outside 0..{n}')
  joint = np.bincount(
      (compact.astype(np.intp) * (n + 1) + pred_instances).ravel(),
      minlength=values.size * (n + 1)).reshape(values.size, n + 1)
  return _frame_matches(values, gt_pixels, cls, void, joint[:, 1:].T,
                        _label_classes(label_ids, name),
                        np.asarray(scores, np.float64).reshape(-1))


def match_masks(gt_instance_ids: Union[np.ndarray, IndexedInstanceIds],
                masks: Iterable,
                label_ids: Sequence[int], scores: Sequence[float],
                name: str = 'prediction') -> Dict[str, np.ndarray]:
  """Overlaps of one frame from binary masks, which may overlap each other.

  Args:
    gt_instance_ids: [H, W] Cityscapes instanceIds values, or their
      `index_instance_ids`.
    masks: per prediction either a [H, W] boolean mask or a tuple
      (mask_crop, (top, left)) holding only the mask's bounding box.
    label_ids: Cityscapes label id of each prediction.
    scores: confidence of each prediction.
    name: the prediction's name, for error messages.

  Returns:
    The frame's match record, for `InstanceAP.add_matches`.
  """
  if not isinstance(gt_instance_ids, IndexedInstanceIds):
    gt_instance_ids = index_instance_ids(gt_instance_ids)
  values, gt_pixels, compact, cls, void = gt_instance_ids
  rows = []
  for mask in masks:
    if isinstance(mask, tuple):
      crop, (top, left) = mask
    else:
      crop, top, left = mask, 0, 0
      if mask.shape != compact.shape:
        raise ValueError(f'{name}: mask size {mask.shape} != ground truth '
                         f'{compact.shape}')
    window = compact[top:top + crop.shape[0], left:left + crop.shape[1]]
    rows.append(np.bincount(window[crop.astype(bool, copy=False)],
                            minlength=values.size))
  overlaps = (np.stack(rows) if rows
              else np.zeros((0, values.size), np.int64))
  return _frame_matches(values, gt_pixels, cls, void, overlaps,
                        _label_classes(label_ids, name),
                        np.asarray(scores, np.float64).reshape(-1))


def match_panoptic(gt_instance_ids: np.ndarray, pred_panoptic: np.ndarray,
                   scores: Mapping[int, float],
                   dataset: datasets.DatasetInfo = datasets.CITYSCAPES,
                   name: str = 'prediction') -> Dict[str, np.ndarray]:
  """Overlaps of one frame from a panoptic prediction (model output).

  Every thing segment with instance > 0 is one prediction; its score comes from
  `scores[panoptic_id]`.
  """
  ids, inverse = np.unique(np.asarray(pred_panoptic), return_inverse=True)
  train_ids = ids // dataset.label_divisor
  is_instance = (np.isin(train_ids, dataset.thing_train_ids)
                 & (ids % dataset.label_divisor > 0))
  index = np.zeros(ids.shape, np.int64)
  index[is_instance] = np.arange(1, int(is_instance.sum()) + 1)
  instance_ids = ids[is_instance]
  missing = [int(i) for i in instance_ids if int(i) not in scores]
  if missing:
    raise ValueError(f'{name}: no score for instance {missing[0]}')
  return match_instance_map(
      gt_instance_ids, index[inverse].reshape(np.shape(pred_panoptic)),
      [dataset.train_id_to_label_id[t] for t in train_ids[is_instance]],
      [scores[int(i)] for i in instance_ids], name)


def average_precision(y_true: np.ndarray, y_score: np.ndarray,
                      hard_fns: int) -> float:
  """The official precision/recall curve and its step integration."""
  if y_score.size == 0:
    return 0.0  # No hit and no false positive (the official script crashes).
  order = np.argsort(y_score)
  score_sorted = y_score[order]
  true_cumsum = np.cumsum(y_true[order])
  _, unique_idx = np.unique(score_sorted, return_index=True)
  num_examples = len(score_sorted)
  num_true = true_cumsum[-1]
  precision = np.zeros(len(unique_idx) + 1)
  recall = np.zeros(len(unique_idx) + 1)
  true_cumsum = np.append(true_cumsum, 0)
  cum = true_cumsum[unique_idx - 1]
  tp = num_true - cum
  fp = num_examples - unique_idx - tp
  fn = cum + hard_fns
  precision[:-1] = tp / (tp + fp)
  recall[:-1] = tp / (tp + fn)
  precision[-1] = 1.
  recall[-1] = 0.
  recall_for_conv = np.append(np.append(recall[0], recall), 0.)
  step_widths = np.convolve(recall_for_conv, [-0.5, 0, 0.5], 'valid')
  return float(np.dot(precision, step_widths))


def _class_curve(m: Dict[str, np.ndarray], k: int, overlap: float):
  """(y_true, y_score, hard false negatives) of class k at one threshold."""
  gt_ok = (m['gt_id'] >= 1000) & (m['gt_pixels'] >= MIN_REGION_SIZE)
  pairs = m['pred_class'][m['pair_pred']] == k
  p, g, inter = m['pair_pred'][pairs], m['pair_gt'][pairs], m['pair_inter'][pairs]
  iou = inter / (m['gt_pixels'][g] + m['pred_pixels'][p] - inter)
  hit = iou > overlap
  # Hits on evaluated gt: the best score per gt is a true positive, the rest
  # false positives.
  hp, hg = p[hit & gt_ok[g]], g[hit & gt_ok[g]]
  scores = m['pred_score'][hp]
  order = np.lexsort((-scores, hg))
  hg, scores = hg[order], scores[order]
  first = np.ones(hg.shape, bool)
  first[1:] = hg[1:] != hg[:-1]
  num_gt = int(np.count_nonzero(gt_ok & (m['gt_class'] == k)))
  hard_fns = num_gt - int(first.sum())
  # Predictions hitting no gt at all are false positives unless mostly ignored.
  found = np.zeros(m['pred_class'].shape, bool)
  found[p[hit]] = True
  small = (m['gt_pixels'][g] < MIN_REGION_SIZE).astype(np.int64)
  group = (m['gt_id'][g] < 1000).astype(np.int64)
  ignore = m['pred_void'].astype(np.float64).copy()
  np.add.at(ignore, p, inter * (small + group))
  lonely = (m['pred_class'] == k) & ~found
  lonely &= ignore / np.maximum(m['pred_pixels'], 1) <= overlap
  y_true = np.concatenate([np.ones(first.sum()), np.zeros((~first).sum()),
                           np.zeros(lonely.sum())])
  y_score = np.concatenate([scores[first], scores[~first],
                            m['pred_score'][lonely]])
  return y_true, y_score, hard_fns


class InstanceAP:
  """Accumulates instance matches over frames; `result()` gives AP and AP50.

  Usage in an eval loop:
    metric = InstanceAP()
    for gt_instance_ids, pred_panoptic, scores in frames:
      metric.update_panoptic(gt_instance_ids, pred_panoptic, scores)
    metric.result()['AP']          # percent
  """

  def __init__(self, dataset: datasets.DatasetInfo = datasets.CITYSCAPES):
    self._dataset = dataset
    self._frames: List[Dict[str, np.ndarray]] = []

  def reset(self):
    self._frames = []

  def update_panoptic(self, gt_instance_ids, pred_panoptic, scores,
                      name: str = 'prediction'):
    self.add_matches(match_panoptic(np.asarray(gt_instance_ids),
                                    np.asarray(pred_panoptic), scores,
                                    self._dataset, name))

  def update_masks(self, gt_instance_ids, masks, label_ids, scores,
                   name: str = 'prediction'):
    self.add_matches(match_masks(gt_instance_ids, masks, label_ids,
                                 scores, name))

  def add_matches(self, matches: Dict[str, np.ndarray]):
    """Adds a record from a `match_*` function (e.g. from a worker process)."""
    self._frames.append(matches)

  def _merged(self) -> Dict[str, np.ndarray]:
    merged = {key: [] for key in ('gt_class', 'gt_id', 'gt_pixels', 'pred_class',
                                  'pred_score', 'pred_pixels', 'pred_void',
                                  'pair_pred', 'pair_gt', 'pair_inter')}
    gt_offset = pred_offset = 0
    for frame in self._frames:
      for key in merged:
        value = frame[key]
        if key == 'pair_pred':
          value = value + pred_offset
        elif key == 'pair_gt':
          value = value + gt_offset
        merged[key].append(np.asarray(value))
      gt_offset += len(frame['gt_id'])
      pred_offset += len(frame['pred_class'])
    return {k: np.concatenate(v) if v else np.zeros((0,))
            for k, v in merged.items()}

  def ap_matrix(self) -> np.ndarray:
    """[8 classes, 10 overlaps] AP in [0, 1]; NaN rows for classes without gt."""
    m = self._merged()
    for key in ('gt_class', 'gt_id', 'gt_pixels', 'pred_class', 'pred_pixels',
                'pred_void', 'pair_pred', 'pair_gt', 'pair_inter'):
      m[key] = m[key].astype(np.int64)
    ap = np.full((len(INSTANCE_LABEL_IDS), len(OVERLAPS)), np.nan)
    gt_ok = (m['gt_id'] >= 1000) & (m['gt_pixels'] >= MIN_REGION_SIZE)
    for k in range(len(INSTANCE_LABEL_IDS)):
      if not np.any(gt_ok & (m['gt_class'] == k)):
        continue
      if not np.any(m['pred_class'] == k):
        ap[k] = 0.0
        continue
      for o, overlap in enumerate(OVERLAPS):
        ap[k, o] = average_precision(*_class_curve(m, k, overlap))
    return ap

  def result(self) -> Dict[str, object]:
    """{'AP', 'AP50', 'per_class': {name: {'AP', 'AP50'}}}, in percent."""
    ap = self.ap_matrix()
    valid = ~np.isnan(ap[:, 0])
    mean = (lambda x: float(np.mean(x)) * 100 if x.size else float('nan'))
    return {
        'AP': mean(ap[valid]), 'AP50': mean(ap[valid, 0]),
        'per_class': {
            name: ({'AP': float(ap[k].mean()) * 100,
                    'AP50': float(ap[k, 0]) * 100} if valid[k] else None)
            for k, name in enumerate(INSTANCE_CLASS_NAMES)},
    }
