"""One tiny exported model for all serving tests (exporting takes seconds).

A random-init tiny Panoptic-DeepLab is saved as a trainer-style checkpoint
(`model_dir/checkpoints`, model and optimizer), then exported by the real
entry point, `export_saved_model.py`, in a subprocess.
"""

import functools
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image
import tensorflow as tf

from official_naive_student.core import inference
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.modeling import presets
from official_naive_student.tasks import panoptic_deeplab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
VERSION = 7
TINY_BINDINGS = ("PanopticDeepLabTask.model_fn = @build_panoptic_deeplab",
                 "build_panoptic_deeplab.preset = 'tiny'")


def _make_task():
  return panoptic_deeplab.PanopticDeepLabTask(
      model_fn=functools.partial(presets.build_panoptic_deeplab, 'tiny'))


def _run_python(args, **kwargs):
  """Runs the venv's python; returns the CompletedProcess (text output)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  env.update(kwargs.pop('env', {}))
  return subprocess.run([sys.executable, *args], capture_output=True,
                        text=True, env=env, timeout=300, **kwargs)


def _make_images(count=2, height=33, width=49, seed=0):
  """Random but smooth uint8 images (so JPEG/PNG and the model see structure)."""
  rng = np.random.RandomState(seed)
  coarse = rng.randint(0, 256, (count, 5, 7, 3)).astype(np.float32)
  images = tf.image.resize(coarse, [height, width], method='bilinear')
  return np.clip(np.round(images.numpy()), 0, 255).astype(np.uint8)


@pytest.fixture(scope='session')
def exported(tmp_path_factory):
  """{'model_dir', 'export_dir', 'saved_model'} of the tiny export."""
  root = tmp_path_factory.mktemp('serving')
  model_dir = str(root / 'model_dir')
  task = _make_task()
  model = task.build_model()
  model(tf.zeros([1, *task.input_shape]), training=False)
  optimizer = keras.optimizers.Adam()
  optimizer.build(model.trainable_variables)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  tf.train.CheckpointManager(
      checkpoint, os.path.join(model_dir, trainer_lib.CHECKPOINT_SUBDIR),
      max_to_keep=1).save(checkpoint_number=3)
  export_dir = str(root / 'exported')
  args = [os.path.join(ROOT, 'export_saved_model.py'),
          f'--checkpoint={model_dir}', f'--export_dir={export_dir}',
          f'--version={VERSION}']
  args += [f'--gin_bindings={b}' for b in TINY_BINDINGS]
  result = _run_python(args, cwd=str(root))
  assert result.returncode == 0, result.stderr[-3000:]
  return {'model_dir': model_dir, 'export_dir': export_dir,
          'saved_model': os.path.join(export_dir, str(VERSION))}


@pytest.fixture(scope='session')
def restored(exported):
  """(task, model) with the exported weights, for the in-process eval path."""
  task = _make_task()
  model, _ = inference.load_model(task.build_model, exported['model_dir'])
  return task, model


@pytest.fixture(scope='session')
def run_python():
  """`fn(args, **subprocess_kwargs)`: the venv's python, text output."""
  return _run_python


@pytest.fixture(scope='session')
def make_images():
  """`fn(count=2, height=33, width=49, seed=0)` -> smooth uint8 images."""
  return _make_images


@pytest.fixture(scope='session')
def make_task():
  """`fn()` -> the tiny Cityscapes PanopticDeepLabTask the export uses."""
  return _make_task


@pytest.fixture
def bad_inputs(tmp_path):
  """(folder, {bad path: words its reported reason must contain}).

  Good a.png and e.png sorted among a truncated PNG, a cut JPEG, a file that
  is no image at all and an image the export refuses as too large.
  """
  folder = tmp_path / 'in'
  folder.mkdir()
  images = _make_images(2, 17, 25, seed=5)
  Image.fromarray(images[0]).save(folder / 'a.png')
  Image.fromarray(images[1]).save(folder / 'e.png')
  Image.fromarray(images[0]).save(folder / 'b.png')
  Image.fromarray(images[1]).save(folder / 'c.jpg', quality=90)
  for name in ('b.png', 'c.jpg'):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[:len(data) * 2 // 3])
  (folder / 'd.png').write_bytes(b'not an image at all')
  # Small file, over the export's default budget of 1024 x 2048 pixels.
  Image.new('RGB', (1500, 1500)).save(folder / 'f.png')
  return str(folder), {
      str(folder / 'b.png'): 'truncated', str(folder / 'c.jpg'): 'truncated',
      str(folder / 'd.png'): 'cannot identify image file',
      str(folder / 'f.png'): 'is 1500x1500 (height x width); this export '
                             'takes at most 2097152 pixels'}


@pytest.fixture
def run_on_bad_inputs(bad_inputs, tmp_path):
  """`fn(script, *flags)`: runs predict.py or client.py on `bad_inputs`.

  Asserts that it skipped them loudly: exit status 1, the good images
  written, and the last lines of stderr naming each bad file with its reason.
  """
  folder, bad = bad_inputs
  output_dir = str(tmp_path / 'out')

  def run(script, *flags):
    result = _run_python([os.path.join(ROOT, script), *flags,
                          f'--input={folder}', f'--output={output_dir}'])
    assert result.returncode == 1, result.stderr[-3000:]
    assert f'Wrote predictions of 2 images to {output_dir}' in result.stdout
    tail = result.stderr.strip().splitlines()[-len(bad):]
    assert [line.split(': ')[0] for line in tail] == sorted(bad)
    for line, path in zip(tail, sorted(bad)):
      assert bad[path] in line, line
    assert sorted(n for n in os.listdir(output_dir)
                  if n.endswith('_panoptic.png')) == ['a_panoptic.png',
                                                      'e_panoptic.png']
  return run
