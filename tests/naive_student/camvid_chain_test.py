"""The CamVid Naive-Student chain (gin/camvid/naive_student.gin) at toy size.

A copy of a few real CamVid frames in CamVid's layout (random images with
CamVid-valued labels where the shared copy is absent) runs through train.py's
library path: CAMVID_ROOT moves the data, every stage works on a dataset with
no thing classes (AP and PQ_things are null, panoptic is semantic * divisor),
the pseudo-labels carry CamVid's label ids, and the final checkpoint exports
with a `semantic` output in CamVid's class ids 0..10.
"""

import json
import os
import shutil

import numpy as np
from PIL import Image
import tensorflow as tf

from official_naive_student import datasets
from official_naive_student.core import gin_utils
from official_naive_student.core import train_lib
from official_naive_student.dataloaders import camvid
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.naive_student import loop
from official_naive_student.naive_student import label_folder
from official_naive_student.serving import export_lib

# Four frames of two train sequences (k=4: one labeled each) and two val frames.
TRAIN = ('0001TP_006690', '0001TP_006720', '0001TP_006750', '0001TP_006780',
         '0006R0_f00930', '0006R0_f00960', '0006R0_f00990', '0006R0_f01020')
VAL = ('0016E5_07959', '0016E5_07961')


def _copy_or_make(root):
  """Copies the frames from the shared CamVid, or writes look-alikes."""
  rng = np.random.default_rng(0)
  for split, names in (('train', TRAIN), ('val', VAL)):
    for folder in (split, split + 'annot'):
      os.makedirs(os.path.join(root, folder))
    for name in names:
      image = os.path.join(camvid.DEFAULT_ROOT, split, name + '.jpg')
      label = os.path.join(camvid.DEFAULT_ROOT, split + 'annot', name + '.png')
      if os.path.isfile(image) and os.path.isfile(label):
        shutil.copy(image, os.path.join(root, split))
        shutil.copy(label, os.path.join(root, split + 'annot'))
        continue
      Image.fromarray(rng.integers(0, 256, (90, 120, 3), np.uint8)).save(
          os.path.join(root, split, name + '.jpg'))
      Image.fromarray(rng.integers(0, 12, (90, 120), np.uint8)).save(
          os.path.join(root, split + 'annot', name + '.png'))


def _parse(root):
  gin_utils.parse_gin(['camvid/naive_student.gin'], [
      f"CAMVID_ROOT = '{root}'",
      'run_naive_student.num_iterations = 1',
      'labeled/InputPipeline.crop_size = (64, 64)',
      'labeled/InputPipeline.global_batch_size = 2',
      'pseudo/InputPipeline.crop_size = (64, 64)',
      'pseudo/InputPipeline.global_batch_size = 2',
      'pseudo_label.scales = (1.0, 1.25)',
      'Trainer.num_steps = 2',
      'student/Trainer.num_steps = 2',
      'finetune/Trainer.num_steps = 2',
      'Trainer.checkpoint_every = 2',
      'Trainer.summary_every = 1',
  ])


def test_camvid_chain_runs_and_exports(tmp_path, check_one_iteration_summary,
                                       check_every_binding_used):
  root, model_dir = str(tmp_path / 'camvid'), str(tmp_path / 'run')
  _copy_or_make(root)
  _parse(root)
  rows = train_lib.run_experiment(model_dir=model_dir)

  check_one_iteration_summary(rows, model_dir)
  check_every_binding_used()  # camvid/naive_student.gin and what it includes.
  for row in rows:
    assert row['AP'] is None  # No thing classes.
    if row['stage'] == 'pseudo_label':
      # Rated against the human labels of the 6 frames the split hides.
      assert 0.0 <= row['mIoU'] <= 100.0 and row['num_frames'] == 6
    else:
      assert row['PQ_things'] is None and row['AP50'] is None

  # The unlabeled frames got pseudo-labels in CamVid's label space, which the
  # student read (with the labeled frames' human labels).
  labels_json = label_folder.panoptic_json_path(
      loop.stage_dir(model_dir, 1, 'pseudo_label'))
  annotations = cityscapes_files.read_panoptic_json(labels_json)
  assert sorted(annotations) == sorted(
      r.image_id for r in camvid.find_records(root, 'train', 4).unlabeled)
  for png, segments in annotations.values():
    semantic = decode.decode_panoptic_png(
        png, segments, datasets.CAMVID,
        valid_label_ids=decode.panoptic_category_ids(datasets.CAMVID))
    assert (semantic % 1000 == 0).all()
    assert set(np.unique(semantic // 1000)) <= set(range(11))
  student = loop.stage_dir(model_dir, 1, 'student')
  assert json.load(open(os.path.join(student, loop.STAGE_RESULT)))[
      'pseudo_labels'] == os.path.relpath(labels_json, student)

  # export_saved_model.py's path, with the same gin file.
  task = export_lib.build_task_from_gin()
  path = export_lib.export(task, os.path.join(model_dir, rows[-1]['checkpoint']),
                           str(tmp_path / 'export'), version=1)
  serve = tf.saved_model.load(path).signatures['serve_images']
  image = np.asarray(Image.open(os.path.join(root, 'val', VAL[0] + '.jpg')))
  semantic = serve(images=tf.constant(image[None]))['semantic'].numpy()
  assert semantic.shape == (1, *image.shape[:2])
  assert semantic.min() >= 0 and semantic.max() <= 10
