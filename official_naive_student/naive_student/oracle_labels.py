"""Oracle labels: the ground truth of every unlabeled frame, in place of pseudo-labels.

An ablation, not part of Naive-Student. The synthetic generator keeps the
ground truth of every frame (`hidden_gt/`), and CamVid has the labels that its
semi-supervised split hides from the Teacher. Written in the pseudo-labels'
format and folder layout, they train a Student exactly as pseudo-labels would.
That Student's score is the ceiling of what any Teacher's labels of these frames
can give this Student with this schedule, so it separates "the pseudo-labels are
too poor" from "more frames cannot help this network in this many steps".

Use it as the loop's label function:
  label_and_measure.label_fn = @oracle_labels
  oracle_labels.records = @unlabeled/find_records()
  oracle_labels.hidden_gt_root = @synthetic_hidden_gt_root()
or, on CamVid, with the labels its semi-supervised split drops:
  oracle_labels.records = @truth/camvid_dropped_label_records()
  oracle_labels.dataset_name = 'camvid'
"""

import os
from typing import Callable, Optional, Sequence

from absl import logging
import gin

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders.cityscapes_files import Record
from official_naive_student.evaluation import panoptic_quality
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import label_quality


@gin.register
def oracle_labels(teacher_checkpoint: Optional[str], output_dir: str,
                  records: Sequence[Record] = gin.REQUIRED,
                  hidden_gt_root: Optional[str] = None,
                  split: Optional[str] = None,
                  dataset_name: str = 'cityscapes',
                  teacher_model_fn: Optional[Callable] = None) -> str:
  """Writes the true labels of `records` as a pseudo-label folder.

  Args:
    teacher_checkpoint: unused (the loop's label functions take it).
    output_dir: the pseudo-label folder (`label_folder`).
    records: the frames to label, as for `pseudo_label`. A record that carries
      a label (e.g. `camvid_dropped_label_records`) gives that label; one
      without reads the hidden ground truth.
    hidden_gt_root: root holding gtFine/<split>/<city>/*_instanceIds.png, for
      records without labels (the synthetic video's `hidden_gt/`).
    split: its split folder; None searches all (train and train_extra).
    dataset_name: label space ('cityscapes' also serves the synthetic video).
    teacher_model_fn: unused, as teacher_checkpoint.

  Returns:
    `output_dir`, merged and DONE. Crowd regions stay crowd and ego-car pixels
    (no train id) are void, as in the ground truth. Resumable per frame.
  """
  del teacher_checkpoint, teacher_model_fn
  if file_io.is_done(output_dir):
    return output_dir
  dataset = datasets.get_dataset_info(dataset_name)
  written = 0
  for record in records:
    if os.path.exists(label_folder.fragment_path(output_dir, record.image_id)):
      continue
    if record.label_format is not None:
      panoptic = decode.decode_label(record, dataset)
    elif hidden_gt_root:
      panoptic = panoptic_quality.panoptic_from_instance_ids(
          label_quality.hidden_instance_ids(hidden_gt_root, split,
                                            record.image_id), dataset)
    else:
      raise ValueError(f'{record.image_path}: no label and no hidden_gt_root '
                       'to read its ground truth from')
    label_folder.write_frame(output_dir, record.image_id, panoptic, dataset)
    written += 1
  logging.info('Wrote the ground truth of %d frames to %s', written, output_dir)
  label_folder.merge_pseudo_labels(output_dir, dataset)
  return output_dir
