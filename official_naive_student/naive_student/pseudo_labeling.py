"""Teacher inference for Naive-Student: a Teacher labels unlabeled video frames.

Naive-Student (Chen et al., ECCV 2020, Sec. 3-4) labels every unlabeled frame with
the Teacher's test-time-augmented prediction (multi-scale inputs + left-right
flip, averaging semantic probabilities, center heatmaps and offsets), voids the
ego car of each snippet, and trains the Student on these hard labels. The labels
go to a pseudo-label folder (`label_folder`), resumably and in shards.

settings.json records what the labels depend on (`label_settings`: the
Teacher's checkpoint by a fingerprint of its contents, its network, TTA,
precision, the frames...); a run with other settings fails before any work,
even on a finished folder, naming the keys that differ, unless told to
`overwrite` (start over).

The command line is `pseudo_label_stage`.
"""

import functools
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import gin
from PIL import Image
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import inference
from official_naive_student.core import progress as progress_lib
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.naive_student import ego_car
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import label_settings
from official_naive_student.tasks import panoptic_deeplab as task_lib

Record = cityscapes_files.Record
SettingsMismatchError = label_settings.SettingsMismatchError


def _predict(infer: Callable, pipeline: input_pipeline.InputPipeline,
             strategy: tf.distribute.Strategy, confidence_threshold: float):
  """Yields (image_id, panoptic [H', W'] int32) over the pipeline's frames.

  With `confidence_threshold`, pixels whose TTA-averaged top class probability
  is below it are void (the Teacher's infer must return semantic probs).
  """
  dataset = strategy.distribute_datasets_from_function(pipeline.dataset_fn)
  local = strategy.experimental_local_results
  void_id = pipeline.void_id

  def labels(outputs):
    panoptic = outputs[common.PRED_PANOPTIC]
    if confidence_threshold > 0:
      confidence = tf.reduce_max(outputs[common.PRED_SEMANTIC_PROBS], axis=-1)
      panoptic = tf.where(confidence < confidence_threshold, void_id, panoptic)
    return panoptic

  for features in dataset:
    outputs = strategy.run(infer, args=(features[common.IMAGE],))
    panoptic = strategy.run(labels, args=(outputs,))
    for names, one_replica in zip(local(features[common.IMAGE_NAME]),
                                  local(panoptic)):
      for name, one in zip(names.numpy(), one_replica.numpy()):
        yield name.decode(), one


def write_pseudo_labels(
    build_infer: Callable[[], Callable], records: Sequence[Record],
    output_dir: str, dataset: datasets.DatasetInfo = datasets.CITYSCAPES,
    ego_car_void: bool = True, batch_size: int = 1,
    eval_pad_size: Optional[Sequence[int]] = None, shard: int = 0,
    num_shards: int = 1, strategy: Optional[tf.distribute.Strategy] = None,
    max_frames: Optional[int] = None,
    settings: Optional[Dict[str, object]] = None,
    confidence_threshold: float = 0.0) -> Dict[str, object]:
  """Labels this shard's frames that have no label yet, then marks the shard.

  Args:
    build_infer: `() -> infer`, `infer(images) -> predictions` as made by
      `inference.make_inference_fn`; only called when there is work left.
    records: all frames to label (every shard passes the same list).
    output_dir: the pseudo-label folder (`label_folder`).
    dataset: label space of the predictions.
    ego_car_void: void each frame's snippet's ego-car mask (read from its
      `reference_label_path`).
    batch_size: frames per inference call (global, over replicas).
    eval_pad_size: pad images to this size (as in evaluation); labels are
      cropped back to each image's own size.
    shard: this process's shard index.
    num_shards: number of processes sharing `records`.
    strategy: distributes inference (default: the current strategy).
    max_frames: stop after labeling this many frames (time-limited jobs); the
      next run goes on from there.
    settings: extra entries of settings.json that must match across runs.
    confidence_threshold: void the pixels whose top class probability is
      below it (0: hard labels everywhere, the paper's recipe).

  Returns:
    {'written', 'skipped', 'complete'}: frames labeled now, frames found done,
    and whether the whole shard is done (its marker written).

  Raises:
    SettingsMismatchError: settings.json holds other settings.
  """
  label_settings.check_settings(output_dir, label_settings.label_settings(
      records, dataset, ego_car_void, eval_pad_size, num_shards, settings))
  mine, todo = label_folder.frames_to_label(output_dir, records, shard,
                                            num_shards)
  skipped = len(mine) - len(todo)
  if max_frames is not None:
    todo = todo[:max_frames]
  written = 0
  if todo:
    by_id = {r.image_id: r for r in todo}
    masks = ego_car.snippet_masks(todo) if ego_car_void else {}
    missing = [r for r in todo if ego_car_void and r.labeled_image_id
               not in masks]
    if missing:
      logging.warning('%d frames (e.g. %s) have no ego-car reference label',
                      len(missing), missing[0].image_path)
    void_id = dataset.ignore_label * dataset.label_divisor
    pipeline = input_pipeline.InputPipeline(
        records=todo, dataset_name=dataset.name, mode='unlabeled',
        global_batch_size=batch_size, eval_pad_size=eval_pad_size)
    progress = progress_lib.Progress(
        len(mine), unit='frames', start=skipped,
        name=f'pseudo_label shard {shard}/{num_shards}')
    strategy = strategy or tf.distribute.get_strategy()
    for image_id, panoptic in _predict(build_infer(), pipeline, strategy,
                                       confidence_threshold):
      record = by_id[image_id]
      if eval_pad_size is not None:
        with Image.open(record.image_path) as image:  # Reads the header only.
          panoptic = panoptic[:image.height, :image.width]
      if ego_car_void:
        panoptic = ego_car.apply_ego_car_void(
            panoptic, ego_car.mask_for(record, masks), void_id)
      label_folder.write_frame(output_dir, image_id, panoptic, dataset)
      written += 1
      progress.update()
  complete = skipped + written == len(mine)
  if complete:
    label_folder.mark_shard_done(output_dir, shard, num_shards, len(mine))
  logging.info('pseudo_label shard %d/%d: %d frames written, %d already done%s',
               shard, num_shards, written, skipped,
               ', shard complete' if complete else '')
  return {'written': written, 'skipped': skipped, 'complete': complete}


@gin.register
def pseudo_label(teacher_checkpoint: str, output_dir: str,
                 records: Sequence[Record] = gin.REQUIRED,
                 task=None, teacher_model_fn: Optional[Callable] = None, scales: Sequence[float] = (1.0,),
                 flip: bool = False, ego_car_void: bool = True,
                 batch_size: int = 1,
                 eval_pad_size: Optional[Sequence[int]] = None,
                 shard: int = 0, num_shards: int = 1,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 max_frames: Optional[int] = None,
                 precision: str = 'float32',
                 overwrite: bool = False,
                 confidence_threshold: float = 0.0) -> Optional[str]:
  """Labels `records` with the Teacher's TTA prediction; resumable and sharded.

  Args:
    teacher_checkpoint: a checkpoint prefix, its folder or the Teacher's
      model_dir (as written by `core/trainer.py`).
    output_dir: the pseudo-label folder (`label_folder`).
    records: the unlabeled frames, e.g. `@cityscapes_files.find_records()` of
      'train-sequence'; every shard must get the same list.
    task: builds the Teacher model and post-processor (`PanopticDeepLabTask`,
      default: one configured by gin).
    teacher_model_fn: the network the Teacher was trained as,
      `fn(num_classes=...)` (None: the task's).
    scales: TTA input scales (the paper: 0.5 to 2.0 in steps of 0.25).
    flip: also average the left-right flipped views.
    ego_car_void, batch_size, eval_pad_size, shard, num_shards, strategy,
    max_frames: see `write_pseudo_labels`.
    precision: the Keras dtype policy of the Teacher ('float32',
      'mixed_bfloat16'), explicit rather than the process's global policy
      (which a Trainer of the same process sets), so that a chain and the
      same chain resumed after its Teacher stage label alike.
    overwrite: delete the folder's labels first (`label_folder.remove_labels`)
      and start over; run it alone, not while other shards are labeling.
    confidence_threshold: void pixels whose TTA-averaged top class
      probability is below it, so the Student is not taught where the Teacher
      is unsure (beyond the paper, whose labels are hard everywhere: 0).

  Returns:
    `output_dir` once every shard is done and the json is merged (at once if
    its DONE marker exists), else None (other shards, or frames, remain).

  Raises:
    SettingsMismatchError: the folder, finished or not, holds labels made
      with other settings (another Teacher, TTA, precision, frames...).
  """
  task = task or gin.get_configurable(task_lib.PanopticDeepLabTask)()
  prefix = inference.resolve_checkpoint(teacher_checkpoint)
  strategy = strategy or tf.distribute.get_strategy()
  build_model = task.build_model
  if teacher_model_fn is not None:
    build_model = functools.partial(teacher_model_fn,
                                    num_classes=task.info.num_classes)
  # The network (cheap), for the settings; its weights only if needed.
  model = inference.build_model(build_model, precision, strategy)
  teacher = label_settings.teacher_settings(prefix, model, scales, flip)
  if confidence_threshold:
    teacher['confidence_threshold'] = confidence_threshold
  if overwrite:
    label_folder.remove_labels(output_dir)
  if file_io.is_done(output_dir):
    settings = label_settings.label_settings(
        records, task.info, ego_car_void, eval_pad_size, num_shards, teacher)
    label_settings.compare_settings(output_dir, settings,
                                    ignore=label_settings.SPLIT_SETTINGS)
    logging.info('%s is DONE; nothing to label', output_dir)
    return output_dir

  def build_infer():
    with strategy.scope():
      inference.restore_model(model, prefix)
      return inference.make_inference_fn(
          model, task.build_post_processor(),
          inference.make_tta_fn(scales, flip))

  result = write_pseudo_labels(
      build_infer, records, output_dir, task.info, ego_car_void=ego_car_void,
      batch_size=batch_size, eval_pad_size=eval_pad_size, shard=shard,
      num_shards=num_shards, strategy=strategy, max_frames=max_frames,
      settings=teacher, confidence_threshold=confidence_threshold)
  if result['complete'] and not label_folder.pending_shards(output_dir):
    label_folder.merge_pseudo_labels(output_dir, task.info)
    return output_dir
  return None
