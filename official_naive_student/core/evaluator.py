"""Model -> post-processing -> PQ / mIoU / AP over an evaluation dataset.

The same inference function (`core/inference.make_inference_fn`) serves
evaluation, sample image summaries, pseudo-labeling and export, so all of them
compute the same labels.
Metrics come from `evaluation/`, whose numbers equal the official cityscapesscripts
evaluators on the same files; in-loop AP reads the ground truth from the panoptic
map (see `instance_ids_from_panoptic`), so for numbers to publish, write results
with `evaluation.cityscapes_results` and run `evaluation.cityscapes_eval`.
"""

from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import progress as progress_lib
from official_naive_student.evaluation import cityscapes_results
from official_naive_student.evaluation import instance_ap
from official_naive_student.evaluation import panoptic_quality
from official_naive_student.evaluation import semantic_iou

METRIC_KEYS = ('PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff', 'mIoU', 'AP', 'AP50')


def instance_ids_from_panoptic(panoptic: np.ndarray,
                               dataset: datasets.DatasetInfo) -> np.ndarray:
  """Project panoptic ids -> Cityscapes instanceIds (label ids), for AP.

  Thing instance k >= 1 -> label_id * 1000 + k - 1; crowd (k = 0) -> label_id
  (a group); stuff -> label_id; void -> 0.
  """
  panoptic = np.asarray(panoptic).astype(np.int64)
  train_id = panoptic // dataset.label_divisor
  instance = panoptic % dataset.label_divisor
  lut = np.zeros((256,), np.int64)
  lut[:dataset.num_classes] = dataset.train_id_to_label_id
  label_id = lut[np.clip(train_id, 0, 255)]
  is_thing = np.isin(train_id, dataset.thing_train_ids)
  out = np.where(is_thing & (instance > 0), label_id * 1000 + instance - 1,
                 label_id)
  return np.where(train_id == dataset.ignore_label, 0, out)


class PanopticMetrics:
  """PQ, mIoU and (for datasets with things) AP, accumulated frame by frame."""

  def __init__(self, dataset: datasets.DatasetInfo):
    self.dataset = dataset
    self.pq = panoptic_quality.PanopticQuality(dataset)
    self.miou = semantic_iou.SemanticIoU(dataset)
    self.ap = instance_ap.InstanceAP(dataset) if dataset.thing_train_ids else None

  def update(self, gt_panoptic: np.ndarray, predictions: Dict[str, np.ndarray],
             name: str = 'prediction',
             scores: Optional[Dict[int, float]] = None) -> None:
    """Adds one frame: gt [H, W] panoptic, predictions of one image.

    `scores` ({panoptic id: score}) saves recomputing them when the caller has.
    """
    gt_semantic = gt_panoptic // self.dataset.label_divisor
    self.miou.update(gt_semantic, predictions[common.PRED_SEMANTIC], name)
    self.pq.update(gt_panoptic, predictions[common.PRED_PANOPTIC], name)
    if self.ap is not None:
      self.ap.update_panoptic(
          instance_ids_from_panoptic(gt_panoptic, self.dataset),
          predictions[common.PRED_PANOPTIC],
          scores if scores is not None
          else _scores_by_segment(predictions, self.dataset), name)

  def result(self) -> Dict[str, float]:
    pq = self.pq.result()
    out = {key: pq.get(key) for key in ('PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff')}
    out['mIoU'] = self.miou.result()['mIoU']
    ap = self.ap.result() if self.ap is not None else {'AP': None, 'AP50': None}
    out['AP'], out['AP50'] = ap['AP'], ap['AP50']
    return {k: (None if v is None or not np.isfinite(v) else float(v))
            for k, v in out.items()}


def _scores_by_segment(predictions, dataset) -> Dict[int, float]:
  """{panoptic id: score} for the thing segments of one image."""
  panoptic = predictions[common.PRED_PANOPTIC]
  instance = predictions[common.PRED_INSTANCE]
  scores = predictions[common.PRED_INSTANCE_SCORES]
  result = {}
  for segment in np.unique(panoptic):
    if segment % dataset.label_divisor == 0:
      continue
    ids = instance[panoptic == segment]
    k = int(np.bincount(ids[ids > 0]).argmax()) if np.any(ids > 0) else 0
    result[int(segment)] = float(scores[k - 1]) if 0 < k <= len(scores) else 0.0
  return result


def evaluate(infer: Callable, dataset: tf.data.Dataset,
             info: datasets.DatasetInfo, num_examples: Optional[int] = None,
             original_sizes: bool = True,
             results_writer: Optional[cityscapes_results.ResultsWriter] = None
             ) -> Dict[str, float]:
  """Runs `infer` over (features, labels) batches and returns METRIC_KEYS.

  Args:
    infer: from `inference.make_inference_fn`.
    dataset: batches of ({IMAGE, IMAGE_NAME, ...}, {GT_PANOPTIC}).
    info: the label space.
    num_examples: for the progress line.
    original_sizes: crop predictions to the ground truth's size (padding).
    results_writer: also writes every frame's prediction in the official
      evaluators' formats (needs IMAGE_NAME), the same labels that are scored.
  """
  metrics = PanopticMetrics(info)
  progress = progress_lib.Progress(num_examples, unit='images', name='eval')
  for features, labels in dataset:
    predictions = {k: v.numpy() for k, v in infer(features[common.IMAGE]).items()}
    gt = labels[common.GT_PANOPTIC].numpy()
    names = features.get(common.IMAGE_NAME)
    if results_writer is not None and names is None:
      raise ValueError('results_writer needs image names in the dataset')
    for i in range(gt.shape[0]):
      one = {k: v[i] for k, v in predictions.items()}
      name = names[i].numpy().decode() if names is not None else str(i)
      scores = (_scores_by_segment(one, info)
                if info.thing_train_ids or results_writer is not None else None)
      metrics.update(gt[i], one, name, scores)
      if results_writer is not None:
        results_writer.write(name, semantic=one[common.PRED_SEMANTIC],
                             panoptic=one[common.PRED_PANOPTIC], scores=scores)
    progress.update(gt.shape[0])
  if results_writer is not None:
    results_writer.close()
  return metrics.result()
