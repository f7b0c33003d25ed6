"""Oracle labels: the ground truth of every unlabeled frame, in place of pseudo-labels.

An ablation, not part of Naive-Student. The synthetic generator keeps the
ground truth of every frame (`hidden_gt/`); written in the pseudo-labels'
format and folder layout, it trains a Student exactly as pseudo-labels would.
That Student's score is the ceiling of what any Teacher's labels of these frames
can give this Student with this schedule, so it separates "the pseudo-labels are
too poor" from "more frames cannot help this network in this many steps".

Use it as the loop's label function:
  label_and_measure.label_fn = @oracle_labels
  oracle_labels.records = @unlabeled/find_records()
  oracle_labels.hidden_gt_root = @synthetic_hidden_gt_root()
"""

import os
from typing import Optional, Sequence

from absl import logging
import gin

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders.cityscapes_files import Record
from official_naive_student.evaluation import panoptic_quality
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import pseudo_label_stage as pls


@gin.register
def oracle_labels(teacher_checkpoint: Optional[str], output_dir: str,
                  records: Sequence[Record] = gin.REQUIRED,
                  hidden_gt_root: str = gin.REQUIRED,
                  split: Optional[str] = None,
                  dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> str:
  """Writes the hidden ground truth of `records` as a pseudo-label folder.

  Args:
    teacher_checkpoint: unused (the loop's label functions take it).
    output_dir: the pseudo-label folder (layout of `pseudo_label_stage`).
    records: the frames to label, as for `pseudo_label`.
    hidden_gt_root: root holding gtFine/<split>/<city>/*_instanceIds.png.
    split: its split folder; None searches all (train and train_extra).
    dataset: label space.

  Returns:
    `output_dir`, merged and DONE. Crowd regions stay crowd and ego-car pixels
    (no train id) are void, as in the ground truth. Resumable per frame.
  """
  del teacher_checkpoint
  if file_io.is_done(output_dir):
    return output_dir
  written = 0
  for record in records:
    if os.path.exists(pls.fragment_path(output_dir, record.image_id)):
      continue
    panoptic = panoptic_quality.panoptic_from_instance_ids(
        label_quality.hidden_instance_ids(hidden_gt_root, split, record.image_id),
        dataset)
    pls.write_frame(output_dir, record.image_id, panoptic, dataset)
    written += 1
  logging.info('Wrote the ground truth of %d frames to %s', written, output_dir)
  pls.merge_pseudo_labels(output_dir, dataset)
  return output_dir
