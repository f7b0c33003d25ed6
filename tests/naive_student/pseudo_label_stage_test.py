"""Tests of the pseudo-label stage's command line (`pseudo_label_stage`)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

import official_naive_student
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import pseudo_label_stage

INFO = datasets.CITYSCAPES
NUM_FRAMES = 20  # The frames of the `setup` fixture (conftest.py).


def _labels(output_dir):
  """image id -> decoded panoptic map of a merged pseudo-label folder."""
  annotations = cf.read_panoptic_json(label_folder.panoptic_json_path(output_dir))
  return {k: decode.decode_panoptic_png(png, segments, INFO)
          for k, (png, segments) in annotations.items()}


def test_module_cli_with_a_gin_file(setup, tmp_path):
  """`python -m ...pseudo_label_stage --gin_file F`, F importing the modules.

  The command's module then exists twice (as __main__ and by its package name,
  as older gin files import it); it registers nothing, so a gin binding of
  `pseudo_label` still resolves to one configurable.
  """
  out = str(tmp_path / 'labels')
  shutil.copytree(setup['full'], out)
  config = tmp_path / 'labels.gin'
  config.write_text(
      'import official_naive_student.naive_student.pseudo_label_stage\n'
      'import official_naive_student.naive_student.pseudo_labeling\n'
      'pseudo_label.flip = True\n')
  repo = os.path.dirname(os.path.dirname(os.path.abspath(
      official_naive_student.__file__)))
  run = subprocess.run(
      [sys.executable, '-m',
       'official_naive_student.naive_student.pseudo_label_stage',
       '--gin_file', str(config), '--output_dir', out, '--merge_only'],
      cwd=repo, env={**os.environ, 'PYTHONPATH': repo}, capture_output=True,
      text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  assert f'{out}: done' in run.stdout


def test_cli_with_gin_and_tta(setup, capsys):
  out = str(setup['base'] / 'cli')
  bindings = [
      "PanopticDeepLabTask.model_fn = @build_panoptic_deeplab",
      "build_panoptic_deeplab.preset = 'tiny'",
      "pseudo_label.task = @PanopticDeepLabTask()",
      "pseudo_label.scales = (0.5, 1.0)",
      "pseudo_label.flip = True",
      "pseudo_label.batch_size = 10",
  ]
  argv = sum((['--gin_bindings', b] for b in bindings), [])
  argv += ['--teacher_checkpoint', setup['teacher_dir'], '--output_dir', out,
           '--cityscapes_root', setup['root'], '--split', 'train-sequence',
           '--hidden_gt_root', os.path.join(setup['root'], 'hidden_gt')]
  assert pseudo_label_stage.main(argv) == 0
  printed = capsys.readouterr().out
  assert f'{out}: done' in printed and '"PQ"' in printed
  settings = file_io.read_json(os.path.join(out, label_folder.SETTINGS_FILE))
  assert settings['scales'] == [0.5, 1.0] and settings['flip']
  assert len(_labels(out)) == NUM_FRAMES
  assert tf.io.gfile.exists(os.path.join(out, file_io.DONE_MARKER))


def test_cli_merge_only_keeps_the_label_space(tmp_path, capsys):
  """CamVid fragments merge into a json whose categories are CamVid's."""
  camvid = datasets.get_dataset_info('camvid')
  out = str(tmp_path / 'camvid_labels')
  semantic = np.zeros((8, 8), np.int32)
  semantic[:, 4:] = 3
  semantic[0, 0] = camvid.ignore_label
  label_folder.write_frame(out, '0016E5_07959', semantic * camvid.label_divisor, camvid)
  assert pseudo_label_stage.main(['--merge_only', '--output_dir', out,
                   '--dataset_name', 'camvid']) == 0
  assert f'{out}: done' in capsys.readouterr().out
  annotations = cf.read_panoptic_json(label_folder.panoptic_json_path(out))
  png, segments = annotations['0016E5_07959']
  decoded = decode.decode_panoptic_png(png, segments, camvid)
  np.testing.assert_array_equal(decoded // camvid.label_divisor, semantic)
  with open(label_folder.panoptic_json_path(out)) as f:
    categories = json.load(f)['categories']
  assert [c['name'] for c in categories] == list(camvid.class_names)


def test_cli_labels_with_a_teacher_gin_whose_splits_are_missing(
    setup, tmp_path, capsys):
  """The shipped Teacher gin, its labeled and eval splits absent: labeling
  builds the gin task for its model only, and reads neither split."""
  out = str(tmp_path / 'labels')
  bindings = [f"CITYSCAPES_ROOT = '{tmp_path / 'no_such_root'}'",
              "build_panoptic_deeplab.preset = 'tiny'",
              'import official_naive_student.naive_student.pseudo_labeling']
  argv = ['--gin_file', 'cityscapes/teacher.gin']
  argv += sum((['--gin_bindings', b] for b in bindings), [])
  argv += ['--teacher_checkpoint', setup['teacher_dir'], '--output_dir', out,
           '--cityscapes_root', setup['root'], '--split', 'train-sequence']
  assert pseudo_label_stage.main(argv) == 0
  assert f'{out}: done' in capsys.readouterr().out
  assert len(_labels(out)) == NUM_FRAMES
  assert not os.path.exists(tmp_path / 'no_such_root')
