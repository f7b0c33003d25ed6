"""A bad input file stops a run early or promptly, by name, and never hangs.

With validation on (the default), `run_stage` fails before the model is built.
With it off, the file is found by tf.data in the middle of training: `train.py`
must still exit non-zero within seconds and name the file (it used to print ten
tracebacks and, in 2 of 7 runs, hang while tf.data shut down).
"""

import functools
import os
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from official_naive_student.core import train_lib
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import input_pipeline as ip
from official_naive_student.dataloaders import tiny_cityscapes
from official_naive_student.modeling import presets
from official_naive_student.tasks import panoptic_deeplab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
TIMEOUT_S = 120

_GIN = """
import official_naive_student.core.train_lib
import official_naive_student.tasks.panoptic_deeplab
include 'models/tiny.gin'
run_experiment.experiment_fn = @run_stage
run_stage.task = @PanopticDeepLabTask()
run_stage.trainer_fn = @Trainer
PanopticDeepLabTask.dataset_name = 'cityscapes'
PanopticDeepLabTask.model_fn = @build_panoptic_deeplab
PanopticDeepLabTask.train_data = @InputPipeline
PanopticDeepLabTask.loss_fn = @PanopticLoss
InputPipeline.records = @cityscapes_files.find_records()
cityscapes_files.find_records.cityscapes_root = '{root}'
cityscapes_files.find_records.split = 'train-fine'
InputPipeline.crop_size = (32, 64)
InputPipeline.global_batch_size = 2
Trainer.num_steps = 4
Trainer.summary_every = 2
Trainer.checkpoint_every = 2
"""


def _truncate(path):
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


@pytest.fixture
def data(tmp_path):
  """(root, records) of a 3-frame train split; tests break its second frame."""
  root = str(tmp_path / 'cityscapes')
  tiny_cityscapes.write_tree(root, height=64, width=128, sequences=False,
                             splits=('train',))
  return root, cf.find_records(root, 'train-fine')


def test_run_stage_stops_before_training(data, tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  _, records = data
  _truncate(records[1].label_path)
  task = panoptic_deeplab.PanopticDeepLabTask(
      train_data=functools.partial(ip.InputPipeline, records=records,
                                   crop_size=(32, 64), global_batch_size=2),
      model_fn=functools.partial(presets.build_panoptic_deeplab, 'tiny'))
  model_dir = str(tmp_path / 'model')
  trainer_fn = functools.partial(trainer_lib.Trainer, num_steps=2,
                                 checkpoint_every=1)
  with pytest.raises(ValueError) as e:
    train_lib.run_stage(model_dir, mode='train', task=task,
                        trainer_fn=trainer_fn)
  assert str(e.value) == ('1 bad input file:\n  ' + records[1].label_path +
                          ': corrupt or truncated labelIds PNG (image file is '
                          'truncated)')
  assert tf.train.latest_checkpoint(
      os.path.join(model_dir, trainer_lib.CHECKPOINT_SUBDIR)) is None


@pytest.mark.parametrize('bad,cache_decoded', [
    ('label_path', False), ('label_path', True), ('image_path', False)])
def test_train_py_exits_promptly_naming_the_file(data, tmp_path, bad,
                                                 cache_decoded):
  root, records = data
  path = getattr(records[1], bad)
  _truncate(path)
  config = tmp_path / 'tiny.gin'
  config.write_text(_GIN.format(root=root))
  argv = [sys.executable, os.path.join(ROOT, 'train.py'),
          '--gin_file', str(config), '--model_dir', str(tmp_path / 'model'),
          '--mode', 'train',
          '--gin_bindings', 'run_stage.validate_inputs=False',
          '--gin_bindings', f'InputPipeline.cache_decoded={cache_decoded}']
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2',
             CUDA_VISIBLE_DEVICES='')
  began = time.monotonic()
  try:
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f'train.py still running after {TIMEOUT_S} s; output tail:\n'
                f'{(e.stderr or b"")[-3000:]}')
  output = run.stdout + run.stderr
  assert run.returncode == 1, output[-3000:]
  assert f'train.py failed: ValueError: {path}: ' in output, output[-3000:]
  assert time.monotonic() - began < TIMEOUT_S
