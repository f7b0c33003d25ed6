"""Inference from a trained checkpoint: find it, build and restore the model, run it.

Pseudo-labeling, evaluation, export and `predict.py` all go through this module,
so a checkpoint path means the same everywhere, a model is restored in the
precision its caller names (not whatever dtype policy the process last set), and
every one of them computes the same labels from the same weights.
"""

import functools
import os
from typing import Callable, Dict, Optional, Sequence, Tuple

from absl import logging
import keras
import tensorflow as tf

from official_naive_student import common
from official_naive_student.post_processing import tta


def resolve_checkpoint(path: str) -> str:
  """A checkpoint prefix from a prefix, a checkpoint folder or a model_dir.

  A folder gives its latest checkpoint, or that of its `checkpoints/`
  subfolder (a trainer's model_dir); model-zoo archives may lack the
  `checkpoint` state file, so a folder's only `*.index` is taken then.

  Raises:
    FileNotFoundError: `path` names no checkpoint.
  """
  if tf.io.gfile.exists(path + '.index'):
    return path
  for folder in (path, os.path.join(path, common.CHECKPOINT_SUBDIR)):
    if tf.io.gfile.isdir(folder):
      latest = tf.train.latest_checkpoint(folder)
      if latest:
        return latest
  indexes = (tf.io.gfile.glob(os.path.join(path, '*.index'))
             if tf.io.gfile.isdir(path) else [])
  if len(indexes) == 1:
    return indexes[0][:-len('.index')]
  raise FileNotFoundError(
      f'{path}: no checkpoint (neither a prefix with {path}.index, nor a '
      f'folder or model_dir whose {common.CHECKPOINT_SUBDIR}/ holds one)')


def build_model(build_fn: Callable[[], keras.Model], precision: str = 'float32',
                strategy: Optional[tf.distribute.Strategy] = None,
                input_shape: Tuple[int, int, int] = (65, 65, 3)
                ) -> keras.Model:
  """`build_fn()` and its variables (one call on zeros), in policy `precision`.

  The process's global policy is set only meanwhile and restored after. The
  first call is made here too, since layers that make their sublayers when
  first called would otherwise take whatever policy the process has then.
  """
  previous = keras.mixed_precision.global_policy()
  strategy = strategy or tf.distribute.get_strategy()
  try:
    keras.mixed_precision.set_global_policy(precision)
    with strategy.scope():
      model = build_fn()
      model(tf.zeros([1, *input_shape]), training=False)
      return model
  finally:
    keras.mixed_precision.set_global_policy(previous)


def restore_model(model: keras.Model, checkpoint: str,
                  input_shape: Tuple[int, int, int] = (65, 65, 3)) -> str:
  """Creates `model`'s variables and restores them from a trainer checkpoint.

  Every model variable must be in the checkpoint, so a model built with other
  options fails here, not with silently random weights; the optimizer slots of
  trainer checkpoints are ignored. Returns the checkpoint prefix used.
  """
  prefix = resolve_checkpoint(checkpoint)
  model(tf.zeros([1, *input_shape]), training=False)
  status = tf.train.Checkpoint(**{common.CKPT_MODEL: model}).restore(prefix)
  status.expect_partial().assert_existing_objects_matched()
  logging.info('Restored the model from %s', prefix)
  return prefix


def load_model(build_fn: Callable[[], keras.Model], checkpoint: str,
               precision: str = 'float32',
               strategy: Optional[tf.distribute.Strategy] = None
               ) -> Tuple[keras.Model, str]:
  """(model, checkpoint prefix): `build_model` then `restore_model`."""
  strategy = strategy or tf.distribute.get_strategy()
  model = build_model(build_fn, precision, strategy)
  with strategy.scope():
    prefix = restore_model(model, checkpoint)
  return model, prefix


def make_tta_fn(scales: Sequence[float] = (1.0,), flip: bool = False,
                plain_at_identity: bool = False) -> Optional[Callable]:
  """`fn(model_fn, images) -> outputs` averaging `scales` x (flip) views.

  Args:
    scales: input scales (`tta.predict_with_tta`).
    flip: also average the left-right mirrored views.
    plain_at_identity: for scales (1.0,) without flip, return None (the plain
      model, as evaluation runs it: export and `predict.py`) instead of the
      averaging path, which still returns float32 semantic probabilities
      (pseudo-labeling, whose confidence threshold reads them).
  """
  scales = tuple(float(s) for s in scales)
  if plain_at_identity and scales == (1.0,) and not flip:
    return None
  return functools.partial(tta.predict_with_tta, scales=scales, flip=flip)


def predict(model, post_processor, images: tf.Tensor,
            tta_fn: Optional[Callable] = None,
            semantic_probs: bool = False) -> Dict[str, tf.Tensor]:
  """images [B, H, W, 3] (0..255) -> the post-processed prediction dict.

  The outputs' PRED_SEMANTIC_PROBS (TTA gives them) are passed on; with
  `semantic_probs` they are computed from the logits when the outputs have
  none.
  """
  images = tf.cast(images, tf.float32)

  def model_fn(views):
    return model(views, training=False)

  outputs = tta_fn(model_fn, images) if tta_fn else model_fn(images)
  predictions = post_processor(outputs)
  probs = outputs.get(common.PRED_SEMANTIC_PROBS)
  if probs is None and semantic_probs:
    probs = tf.nn.softmax(outputs[common.PRED_SEMANTIC_LOGITS], axis=-1)
  if probs is not None:
    predictions[common.PRED_SEMANTIC_PROBS] = probs
  return predictions


def make_inference_fn(model, post_processor,
                      tta_fn: Optional[Callable] = None) -> Callable:
  """`infer(images) -> predictions`: `predict` as one traced function.

  Args:
    model: returns raw outputs (logits, center heatmap, offsets) at input size.
    post_processor: a `PanopticDeepLabPostProcessor`.
    tta_fn: optional `fn(model_fn, images) -> outputs` (`make_tta_fn`).
  """
  @tf.function(reduce_retracing=True)
  def infer(images):
    return predict(model, post_processor, images, tta_fn)

  return infer
