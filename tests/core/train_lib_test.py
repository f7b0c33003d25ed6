"""train.py's library path: the demo teacher config trains, evaluates, resumes."""

import json
import os

import gin
import pytest

from official_naive_student.core import evaluator
from official_naive_student.core import gin_utils
from official_naive_student.core import train_lib
from official_naive_student.dataloaders.synthetic import writer
from official_naive_student.evaluation import cityscapes_eval
from official_naive_student.evaluation import official_scripts


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('synthetic'))
  writer.make_synthetic_cityscapes(root, num_sequences=3, seed=0, height=64,
                                   width=128, split_sizes={'train': 2, 'val': 1},
                                   num_workers=1)
  return root


def _parse(root, steps):
  gin_utils.parse_gin(['demo/teacher.gin'], [
      f"ensure_synthetic_cityscapes.out_dir = '{root}'",
      'ensure_synthetic_cityscapes.height = 64',
      'ensure_synthetic_cityscapes.width = 128',
      'ensure_synthetic_cityscapes.num_sequences = 3',
      'ensure_synthetic_cityscapes.extra_images = 0',
      "ensure_synthetic_cityscapes.split_sizes = {'train': 2, 'val': 1}",
      'labeled/InputPipeline.crop_size = (64, 64)',
      'labeled/InputPipeline.global_batch_size = 2',
      f'Trainer.num_steps = {steps}',
      'Trainer.summary_every = 1',
      'Trainer.checkpoint_every = 2',
      'Trainer.image_summary_every = 2',
  ])


def test_teacher_config_trains_evaluates_and_resumes(synthetic_root, tmp_path):
  model_dir = str(tmp_path / 'teacher')
  _parse(synthetic_root, steps=2)
  result = train_lib.run_experiment(model_dir=model_dir, mode='train_and_eval')
  assert result['step'] == 2
  assert result['checkpoint'].endswith('ckpt-2')
  with open(os.path.join(model_dir, train_lib.EVAL_RESULTS)) as f:
    metrics = json.load(f)
  assert set(evaluator.METRIC_KEYS) <= set(metrics)
  assert 0 <= metrics['mIoU'] <= 100
  assert os.path.exists(os.path.join(model_dir, 'operative_config.gin'))
  assert os.listdir(os.path.join(model_dir, 'train'))  # TensorBoard events.
  # A longer job in the same folder resumes from step 2.
  _parse(synthetic_root, steps=3)
  result = train_lib.run_experiment(model_dir=model_dir, mode='train')
  assert result['step'] == 3
  # Eval mode restores and evaluates without training.
  result = train_lib.run_experiment(model_dir=model_dir, mode='eval')
  assert result['step'] == 3 and result['metrics'] is not None


def test_eval_mode_without_a_checkpoint_is_refused(synthetic_root, tmp_path):
  _parse(synthetic_root, steps=1)
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*checkpoints'):
    train_lib.run_experiment(model_dir=str(tmp_path / 'empty'), mode='eval')
  assert not os.path.exists(tmp_path / 'empty' / train_lib.EVAL_RESULTS)


def test_unknown_mode_is_rejected(synthetic_root, tmp_path):
  _parse(synthetic_root, steps=1)
  with pytest.raises(ValueError, match='--mode'):
    train_lib.run_experiment(model_dir=str(tmp_path), mode='predict')


def test_eval_results_score_the_same_through_the_official_scripts(
    synthetic_root, tmp_path):
  """The files `results_dir` gets are the evaluated labels, in official formats."""
  model_dir, results = str(tmp_path / 'model'), str(tmp_path / 'results')
  _parse(synthetic_root, steps=3)
  gin.bind_parameter('run_stage.results_dir', results)
  result = train_lib.run_experiment(model_dir=model_dir, mode='train_and_eval')
  files = dict(semantic_dir=os.path.join(results, 'semantic'),
               instance_dir=os.path.join(results, 'instance'),
               panoptic_json=os.path.join(results, 'panoptic.json'),
               panoptic_dir=os.path.join(results, 'panoptic'))
  official = official_scripts.metrics(official_scripts.run(
      synthetic_root, 'val', work_dir=str(tmp_path / 'work'), timeout=120,
      **files))
  ours = cityscapes_eval.evaluate(synthetic_root, 'val', num_workers=1,
                                  **files)['metrics']
  for key in cityscapes_eval.RESULT_KEYS:
    assert ours[key] == pytest.approx(official[key], abs=0.01), key
  # In-loop PQ and mIoU are computed on the same labels as the files.
  for key in ('PQ', 'SQ', 'RQ', 'mIoU'):
    assert result['metrics'][key] == pytest.approx(official[key], abs=0.01), key


def test_eval_mode_keeps_the_training_config_record(synthetic_root, tmp_path):
  model_dir = str(tmp_path / 'model')
  _parse(synthetic_root, steps=2)
  train_lib.run_experiment(model_dir=model_dir, mode='train')
  config = os.path.join(model_dir, train_lib.OPERATIVE_CONFIG)
  trained = open(config).read()
  assert 'Trainer.num_steps = 2' in trained
  _parse(synthetic_root, steps=5)  # Other bindings, eval only.
  train_lib.run_experiment(model_dir=model_dir, mode='eval')
  assert open(config).read() == trained
  assert 'Trainer.num_steps = 5' in open(
      os.path.join(model_dir, train_lib.OPERATIVE_CONFIG_EVAL)).read()
