"""Panoptic predictions for local image files, from a checkpoint or a SavedModel.

`predict.py` runs this: the checkpoint path uses the evaluation graph
(`inference.make_inference_fn`), the SavedModel path the exported
`serve_images` signature, which computes the same labels; either way each
image gets the PNGs of `prediction_pngs` and a progress line is printed.
An image that cannot be read, or that the model or server refuses, is reported
by its path and skipped: one bad file in a folder must not cost the others.
"""

import glob
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from official_naive_student import datasets
from official_naive_student.core import inference
from official_naive_student.core import progress as progress_lib
from official_naive_student.serving import client as client_lib
from official_naive_student.serving import export_lib
from official_naive_student.serving import export_module
from official_naive_student.serving import prediction_pngs

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')

Predictor = Callable[[np.ndarray], Dict[str, np.ndarray]]

# What condemns one input and not the run: PIL raises OSError for unreadable,
# unknown or truncated files, SyntaxError for broken PNG chunks and
# DecompressionBombError for absurd sizes; the model (over its pixel budget,
# say) and a server answer a bad image with InvalidArgument.
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_PREDICT_ERRORS = (tf.errors.InvalidArgumentError, client_lib.InvalidInputError)


class FailedImagesError(RuntimeError):
  """Some images failed; every other one was written.

  Attributes:
    failures: [(path, reason)] in input order.
    written: the output paths of the images that succeeded (as
      `predict_files` returns them).
  """

  def __init__(self, failures: Sequence[Tuple[str, str]],
               written: List[Dict[str, str]]):
    self.failures = list(failures)
    self.written = written
    total = len(self.failures) + len(written)
    super().__init__(f'{len(self.failures)} of {total} images failed (the '
                     'others were written):\n' + '\n'.join(
                         f'{path}: {reason}' for path, reason in self.failures))


def list_images(pattern: str) -> List[str]:
  """An image file, a folder (its PNG/JPEG files) or a glob -> sorted paths.

  Raises:
    FileNotFoundError: nothing matches.
  """
  if os.path.isdir(pattern):
    paths = [os.path.join(pattern, name) for name in os.listdir(pattern)]
  elif os.path.isfile(pattern):
    return [pattern]
  else:
    paths = glob.glob(pattern, recursive=True)
  paths = sorted(p for p in paths if os.path.isfile(p)
                 and p.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise FileNotFoundError(f'{pattern}: no {"/".join(IMAGE_EXTENSIONS)} '
                            'images found')
  return paths


def read_image(path: str) -> np.ndarray:
  """[H, W, 3] uint8 RGB (grey and RGBA are converted)."""
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def latest_saved_model(path: str) -> str:
  """`path` if it is a SavedModel, else its highest numeric version folder."""
  if tf.saved_model.contains_saved_model(path):
    return path
  versions = [int(n) for n in tf.io.gfile.listdir(path)
              if n.strip('/').isdigit()] if tf.io.gfile.isdir(path) else []
  if not versions:
    raise FileNotFoundError(f'{path}: neither a SavedModel nor a folder of '
                            'numbered SavedModel versions')
  return os.path.join(path, str(max(versions)))


def saved_model_predictor(path: str):
  """(predictor, DatasetInfo) for an export made by `export_lib`."""
  path = latest_saved_model(path)
  signature = tf.saved_model.load(path).signatures[export_module.SERVE_IMAGES]

  def predict(image: np.ndarray) -> Dict[str, np.ndarray]:
    outputs = signature(**{export_module.IMAGES: tf.constant(image[None])})
    return {name: value.numpy()[0] for name, value in outputs.items()}

  info = export_lib.dataset_info_from_config(
      export_lib.read_export_config(path))
  return predict, info


def checkpoint_predictor(task, checkpoint: str,
                         tta_scales: Sequence[float] = (1.0,),
                         tta_flip: bool = False):
  """(predictor, DatasetInfo) running the evaluation graph on a checkpoint."""
  model, _ = inference.load_model(task.build_model, checkpoint)
  infer = inference.make_inference_fn(
      model, task.build_post_processor(),
      inference.make_tta_fn(tta_scales, tta_flip, plain_at_identity=True))

  def predict(image: np.ndarray) -> Dict[str, np.ndarray]:
    outputs = infer(tf.constant(image[None], tf.float32))
    return {name: value.numpy()[0] for name, value in outputs.items()}

  return predict, task.info


def _reason(error: Exception) -> str:
  """One line: the error's type and its message (a model's assert text)."""
  return f'{type(error).__name__}: {export_module.error_message(error)}'


def predict_files(predictor: Predictor, paths: Sequence[str], output_dir: str,
                  info: datasets.DatasetInfo,
                  progress: Optional[progress_lib.Progress] = None
                  ) -> List[Dict[str, str]]:
  """Predicts every image and writes its PNGs; returns their paths per image.

  Output names use the input's stem; inputs with the same stem in different
  folders would collide, so that is an error.

  Raises:
    FailedImagesError: after all other images are written, if some could not
      be read or were refused (each is also reported on stderr at once).
  """
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  duplicates = sorted({s for s in stems if stems.count(s) > 1})
  if duplicates:
    raise ValueError(f'several inputs are named {duplicates}; outputs would '
                     'overwrite each other')
  progress = progress or progress_lib.Progress(len(paths), unit='images',
                                               name='predict', every_seconds=0)
  written, failures = [], []

  def skip(path, error):
    failures.append((path, _reason(error)))
    print(f'skipped {path}: {failures[-1][1]}', file=sys.stderr, flush=True)
    progress.update(1, extra=f'FAILED {os.path.basename(path)}')

  for path, stem in zip(paths, stems):
    try:
      image = read_image(path)
    except _READ_ERRORS as e:
      skip(path, e)
      continue
    try:  # Not OSError here: a server that is down fails every image alike.
      outputs = predictor(image)
    except _PREDICT_ERRORS as e:
      skip(path, e)
      continue
    written.append(prediction_pngs.write_prediction(
        output_dir, stem, image, outputs, info))
    progress.update(1, extra=os.path.basename(path))
  if failures:
    raise FailedImagesError(failures, written)
  return written


def predict_and_report(predictor: Predictor, paths: Sequence[str],
                       output_dir: str, info: datasets.DatasetInfo) -> int:
  """`predict_files` for the command lines; returns their exit status.

  Prints how many images were written, then each failure on one line, and
  returns 1 when there was one, else 0.
  """
  failed = None
  try:
    written = predict_files(predictor, paths, output_dir, info)
  except FailedImagesError as e:
    written, failed = e.written, e
  print(f'Wrote predictions of {len(written)} images to {output_dir}',
        flush=True)
  if failed:
    print(failed, file=sys.stderr, flush=True)
    return 1
  return 0
