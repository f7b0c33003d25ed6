"""Each kind of bad training input, and the message a user gets for it.

Writes a small Cityscapes-layout tree, breaks one thing per case in a fresh
copy, and prints a markdown table with the message of the validation pass
(`dataloaders/validate.py`, what `run_stage` runs before training) and, with
validation off, of the `tf.data` pipeline itself. Paths are shown from the
tree's root.

  PYTHONPATH=. python benchmarks/bad_inputs.py
"""

import dataclasses
import os
import re
import shutil
import tempfile

from absl import app
import numpy as np
from PIL import Image
import tensorflow as tf

from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.dataloaders import tiny_cityscapes
from official_naive_student.dataloaders import validate

INFO = datasets.CITYSCAPES


def _truncate(path):
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])


def _as_jpeg(records, root):
  jpeg = os.path.join(root, 'frame.jpg')
  Image.open(records[0].image_path).save(jpeg, quality=90)
  _truncate(jpeg)
  return [dataclasses.replace(records[0], image_path=jpeg)] + records[1:]


def _resize_image(records, root):
  del root
  Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(records[0].image_path)
  return records


def _unknown_label_id(records, root):
  del root
  with Image.open(records[0].label_path) as image:
    label = np.array(image)
  label[:4, :4] = 200
  Image.fromarray(label).save(records[0].label_path)
  return records


def _corrupt_label(records, root):
  del root
  with open(records[0].label_path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + b'garbage' * 20)
  return records


def _truncate_image(records, root):
  del root
  _truncate(records[0].image_path)
  return records


def _missing_file(records, root):
  del root
  os.remove(records[1].image_path)
  return records


CASES = (
    ('truncated PNG image', _truncate_image),
    ('truncated JPEG image', _as_jpeg),
    ('corrupt label PNG', _corrupt_label),
    ('50x100 image, 64x128 label', _resize_image),
    ('unknown label id 200', _unknown_label_id),
    ('image file missing', _missing_file),
)


def _first_error(fn) -> str:
  try:
    fn()
  except Exception as e:  # pylint: disable=broad-except
    return f'{type(e).__name__}: {e}'
  return '(no error)'


def _one_line(message: str, root: str) -> str:
  text = message.replace(root + os.sep, '').replace('\n', ' ').strip()
  return (text[:220] + ' ...' if len(text) > 220 else text).replace('|', '/')


def _pipeline_error(records) -> str:
  pipeline = input_pipeline.InputPipeline(
      records=records, dataset_name=INFO.name, mode='train',
      global_batch_size=1, crop_size=(32, 64), shuffle_buffer_size=1)
  def pull():
    for _ in pipeline.dataset_fn().take(len(records)):
      pass
  message = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', _first_error(pull))
  # TF wraps the Python error; its last exception line names the file.
  lines = [l for l in message.splitlines() if 'Error: ' in l]
  return lines[-1] if lines else message.splitlines()[0]


def main(_):
  tf.get_logger().setLevel('ERROR')
  base = tempfile.mkdtemp()
  template = os.path.join(base, 'template')
  tiny_cityscapes.write_tree(template, height=64, width=128, sequences=False,
                             splits=('train',))
  print('| case | validation pass (before training) | tf.data, validation off |')
  print('|---|---|---|')
  for name, corrupt in CASES:
    root = os.path.join(base, 'case')
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template, root)
    records = corrupt(cf.find_records(root, 'train-fine'), root)
    checked = _first_error(lambda: validate.validate_records(
        records, INFO, cache_dir=os.path.join(base, 'cache')))
    present = [r for r in records if os.path.exists(r.image_path)]
    streamed = _pipeline_error(present) if present == records else (
        'n/a (find_records or the validation pass reports it)')
    print(f'| {name} | {_one_line(checked, root)} | '
          f'{_one_line(streamed, root)} |')
  missing = os.path.join(base, 'no_such_root')
  print(f'| dataset root missing | '
        f'{_one_line(_first_error(lambda: cf.find_records(missing, "train-fine")), base)}'
        ' | - |')
  shutil.rmtree(base)


if __name__ == '__main__':
  app.run(main)
