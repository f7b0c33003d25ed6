"""The whole Naive-Student chain through train.py's library path, at toy size.

Checks the wiring that only the chain exercises: the stages' gin scopes (the
student reads the pseudo-labels, not the human labels), the summary rows, and
that re-running a finished chain trains and labels nothing.
"""

import os

import pytest


from official_naive_student.core import gin_utils
from official_naive_student.core import train_lib
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.naive_student import loop
from official_naive_student.naive_student import pseudo_label_stage

def _parse(root):
  gin_utils.parse_gin(['demo/naive_student.gin'], [
      f"ensure_synthetic_cityscapes.out_dir = '{root}'",
      'ensure_synthetic_cityscapes.height = 64',
      'ensure_synthetic_cityscapes.width = 128',
      'ensure_synthetic_cityscapes.num_sequences = 3',
      'ensure_synthetic_cityscapes.frames_per_sequence = 4',
      'ensure_synthetic_cityscapes.labeled_frame = 2',
      'ensure_synthetic_cityscapes.extra_images = 2',
      "ensure_synthetic_cityscapes.split_sizes = {'train': 2, 'val': 1}",
      'run_naive_student.num_iterations = 1',
      'labeled/InputPipeline.crop_size = (64, 64)',
      'labeled/InputPipeline.global_batch_size = 2',
      'pseudo/InputPipeline.crop_size = (64, 64)',
      'pseudo/InputPipeline.global_batch_size = 2',
      'pseudo_label.scales = (1.0, 1.5)',
      'Trainer.num_steps = 2',
      'student/Trainer.num_steps = 2',
      'finetune/Trainer.num_steps = 2',
      'STUDENT_STEPS = 2',
      'Trainer.checkpoint_every = 2',
      'Trainer.image_summary_every = 0',
  ])


def test_chain_runs_once_and_summarizes(tmp_path, monkeypatch,
                                        check_one_iteration_summary):
  root, model_dir = str(tmp_path / 'data'), str(tmp_path / 'run')
  built = {}  # model_dir -> (task, init_checkpoint) of each chain Trainer.
  original_init = trainer_lib.Trainer.__init__

  def recording_init(self, task, model_dir, **kwargs):
    built[model_dir] = task, kwargs.get('init_checkpoint')
    original_init(self, task, model_dir, **kwargs)
  monkeypatch.setattr(trainer_lib.Trainer, '__init__', recording_init)

  def stage_inputs(stage):
    """(label formats of the training records, init checkpoint) of a stage."""
    task, init = built[loop.stage_dir(model_dir, 1, stage)]
    return {r.label_format for r in task.train_data._records}, init
  _parse(root)
  rows = train_lib.run_experiment(model_dir=model_dir)

  check_one_iteration_summary(rows, model_dir, control=True)
  labels_row = rows[1]  # Rated against the hidden ground truth of every frame.
  assert 0 <= labels_row['mIoU'] <= 100 and 0 <= labels_row['PQ'] <= 100
  assert labels_row['num_frames'] == 2 * 4 + 2  # Video frames + extra images.
  # The student trained on the pseudo-labels, the fine-tuning from the student.
  student_config = open(os.path.join(
      loop.stage_dir(model_dir, 1, 'student'), 'operative_config.gin')).read()
  labels = pseudo_label_stage.panoptic_json_path(
      loop.stage_dir(model_dir, 1, 'pseudo_label'))
  assert labels in student_config
  # The control: the Student's start and steps on the human labels, then the
  # same fine-tuning as the Student's.
  teacher = os.path.join(model_dir, rows[0]['checkpoint'])
  assert stage_inputs('student') == ({cf.LABEL_PANOPTIC}, teacher)
  human_labels, init = stage_inputs('control_student')
  assert cf.LABEL_PANOPTIC not in human_labels and init == teacher
  assert stage_inputs('control') == (human_labels, os.path.join(
      loop.stage_dir(model_dir, 1, 'control_student'), 'checkpoints',
      'ckpt-2'))

  # A second run of the finished chain trains and labels nothing.
  def fail(*args, **kwargs):
    raise AssertionError('a finished stage ran again')
  monkeypatch.setattr(trainer_lib.Trainer, 'train', fail)
  monkeypatch.setattr(pseudo_label_stage, 'write_pseudo_labels', fail)
  _parse(root)
  assert train_lib.run_experiment(model_dir=model_dir) == rows

  # A moved chain folder is still a finished chain, with its own checkpoints.
  moved = str(tmp_path / 'moved')
  os.rename(model_dir, moved)
  _parse(root)
  assert train_lib.run_experiment(model_dir=moved) == rows
  for name in os.listdir(moved):
    result = os.path.join(moved, name, loop.STAGE_RESULT)
    if os.path.exists(result):
      assert str(tmp_path / 'run') not in open(result).read(), result

  # Labels rewritten since the Student trained on them: the finished Student
  # is not reused as if nothing had changed.
  labels = pseudo_label_stage.panoptic_json_path(
      loop.stage_dir(moved, 1, 'pseudo_label'))
  with open(labels, 'a') as f:
    f.write(' ')
  _parse(root)
  with pytest.raises(loop.StageInputsChangedError,
                     match=r'iter1_student is finished .*\(pseudo_labels '):
    train_lib.run_experiment(model_dir=moved)
