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
import numpy as np
from PIL import Image
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import inference
from official_naive_student.core import progress as progress_lib
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.naive_student import class_balance
from official_naive_student.naive_student import class_confidence
from official_naive_student.naive_student import ego_car
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import label_settings
from official_naive_student.tasks import panoptic_deeplab as task_lib

Record = cityscapes_files.Record
SettingsMismatchError = label_settings.SettingsMismatchError


def _per_frame(fn: Callable, pipeline: input_pipeline.InputPipeline,
               strategy: tf.distribute.Strategy):
  """Yields (image_id, fn(images) of that frame as numpy) over the pipeline."""
  dataset = strategy.distribute_datasets_from_function(pipeline.dataset_fn)
  local = strategy.experimental_local_results
  for features in dataset:
    outputs = strategy.run(fn, args=(features[common.IMAGE],))
    for names, one_replica in zip(local(features[common.IMAGE_NAME]),
                                  local(outputs)):
      for name, one in zip(names.numpy(), one_replica.numpy()):
        yield name.decode(), one


def _label_fn(infer: Callable, void_id: int,
              thresholds: Optional[Sequence[float]]) -> Callable:
  """images -> panoptic labels [B, H', W'] int32.

  With `thresholds` ([C]), pixels whose TTA-averaged top class probability is
  below their class's threshold are void (`class_confidence`).
  """
  def labels(images):
    outputs = infer(images)
    panoptic = outputs[common.PRED_PANOPTIC]
    if thresholds is not None:
      panoptic = class_confidence.mask_unconfident(
          panoptic, outputs[common.PRED_SEMANTIC_PROBS], thresholds, void_id)
    return panoptic

  return labels


def _crop_to_image(record: Record, array, eval_pad_size):
  """Drops the evaluation padding: `array` cropped to the record's image size."""
  if eval_pad_size is None:
    return array
  with Image.open(record.image_path) as image:  # Reads the header only.
    return array[:image.height, :image.width]


def sample_pixel_log_probs(probs_fn: Callable, records: Sequence[Record],
                           dataset: datasets.DatasetInfo = datasets.CITYSCAPES,
                           ego_car_void: bool = True, num_frames: int = 200,
                           pixels_per_frame: int = 4096, batch_size: int = 1,
                           eval_pad_size: Optional[Sequence[int]] = None,
                           strategy: Optional[tf.distribute.Strategy] = None
                           ) -> np.ndarray:
  """The Teacher's log-probabilities at random pixels of some frames to label,
  what class balance and class confidence thresholds are fitted on.

  Args:
    probs_fn: images -> the Teacher's TTA-averaged probabilities [B, H, W, C].
    records: the frames to be labeled; `num_frames` of them, evenly spaced
      over the list (videos and extra images alike), are sampled.
    dataset: label space of the probabilities.
    ego_car_void: do not sample the ego car (the labels void it).
    num_frames, pixels_per_frame: the sample (pixels drawn with a fixed seed).
    batch_size, eval_pad_size, strategy: as in `write_pseudo_labels`.

  Returns:
    [num_frames * pixels_per_frame, C] float32 log-probabilities.
  """
  stride = max(1, len(records) // max(num_frames, 1))
  sample = list(records[::stride])[:num_frames]
  if not sample:
    raise ValueError(f'pseudo-label fit: no frames to sample ({len(records)} '
                     f'records, class_balance_frames={num_frames})')
  by_id = {r.image_id: r for r in sample}
  masks = ego_car.snippet_masks(sample) if ego_car_void else {}
  pipeline = input_pipeline.InputPipeline(
      records=sample, dataset_name=dataset.name, mode='unlabeled',
      global_batch_size=batch_size, eval_pad_size=eval_pad_size)
  rng = np.random.default_rng(0)
  drawn = []
  progress = progress_lib.Progress(len(sample), unit='frames',
                                   name='pseudo-label fit sample')
  for image_id, probs in _per_frame(probs_fn, pipeline,
                                    strategy or tf.distribute.get_strategy()):
    record = by_id[image_id]
    drawn.append(class_balance.sample_log_probs(
        _crop_to_image(record, probs, eval_pad_size), pixels_per_frame, rng,
        ego_car.mask_for(record, masks)))
    progress.update()
  return np.concatenate(drawn)


def write_pseudo_labels(
    build_infer: Callable[[], Callable], records: Sequence[Record],
    output_dir: str, dataset: datasets.DatasetInfo = datasets.CITYSCAPES,
    ego_car_void: bool = True, batch_size: int = 1,
    eval_pad_size: Optional[Sequence[int]] = None, shard: int = 0,
    num_shards: int = 1, strategy: Optional[tf.distribute.Strategy] = None,
    max_frames: Optional[int] = None,
    settings: Optional[Dict[str, object]] = None,
    confidence_thresholds: Optional[Sequence[float]] = None
) -> Dict[str, object]:
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
    confidence_thresholds: [C]: void the pixels whose top class probability
      is below their class's threshold (None: hard labels everywhere, the
      paper's recipe).

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
    labels = _label_fn(build_infer(), void_id, confidence_thresholds)
    for image_id, panoptic in _per_frame(labels, pipeline, strategy):
      record = by_id[image_id]
      panoptic = _crop_to_image(record, panoptic, eval_pad_size)
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


def _fitted_settings(output_dir, restored_model, tta_fn, records, dataset,
                     ego_car_void, num_frames, batch_size, eval_pad_size,
                     strategy, human_records=None, confidence_quantile=0.0
                     ) -> Dict[str, object]:
  """settings.json entries of what is fitted on a sample before labeling.

  Class balance (with `human_records`) and per-class confidence thresholds
  (with `confidence_quantile`), fitted once on one sample, the thresholds on
  the balanced probabilities. A folder that already has settings.json made
  with the same options gives back its fitted values (a resumed run labels
  the rest alike); any other difference is left for
  `label_settings.compare_settings` to report.
  """
  entries, fits = {}, {}
  if human_records is not None:
    target = class_balance.label_class_shares(human_records, dataset)
    entries['class_balance'] = {
        'frames': int(num_frames),
        'human_label_shares': [round(float(t), 6) for t in target]}
    fits['class_balance'] = 'class_log_bias'
  if confidence_quantile:
    entries['class_confidence'] = {'frames': int(num_frames),
                                   'quantile': float(confidence_quantile)}
    fits['class_confidence'] = 'class_confidence_thresholds'
  if not entries:
    return entries
  existing = label_settings.read_settings(output_dir)
  if existing is not None:  # Fitted before; or other labels, which fail later.
    for option, fitted in fits.items():
      same = existing.get(option) == entries[option]
      entries[fitted] = existing.get(fitted) if same else None
    return entries
  model = restored_model()

  @tf.function(reduce_retracing=True)
  def probs_fn(images):
    outputs = tta_fn(lambda views: model(views, training=False),
                     tf.cast(images, tf.float32))
    return outputs[common.PRED_SEMANTIC_PROBS]

  drawn = sample_pixel_log_probs(
      probs_fn, records, dataset, ego_car_void, num_frames,
      batch_size=batch_size, eval_pad_size=eval_pad_size, strategy=strategy)
  log_bias = np.zeros(drawn.shape[1], np.float32)
  if human_records is not None:
    log_bias = class_balance.fit_log_bias(drawn, np.asarray(target))
    logging.info('class balance on %d frames: log-bias %s; label shares %s '
                 '(human labels %s)', num_frames, np.round(log_bias, 2),
                 np.round(class_balance.label_shares(drawn, log_bias), 4),
                 np.round(target, 4))
    entries['class_log_bias'] = [float(b) for b in log_bias]
  if confidence_quantile:
    thresholds = class_confidence.fit_class_thresholds(drawn + log_bias,
                                                       confidence_quantile)
    logging.info('class confidence thresholds (quantile %s) on %d frames: %s',
                 confidence_quantile, num_frames, np.round(thresholds, 3))
    entries['class_confidence_thresholds'] = [float(t) for t in thresholds]
  return entries


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
                 confidence_threshold: float = 0.0,
                 class_balance_records: Optional[Sequence[Record]] = None,
                 class_balance_frames: int = 200,
                 class_confidence_quantile: float = 0.0) -> Optional[str]:
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
    class_balance_records: records with human labels (e.g. the Teacher's
      training split) whose class shares the labels are aligned to
      (`class_balance`; beyond the paper: None labels the plain argmax). The
      log-biases are fitted on `class_balance_frames` of `records` before
      labeling and kept in settings.json, which a resumed run reads back.
    class_balance_frames: frames sampled for that fit and the next one.
    class_confidence_quantile: void, in each class, the pixels whose top
      probability is below this quantile of the class's confidences on the
      sample (`class_confidence`; beyond the paper: 0 voids none). Combined
      with `confidence_threshold`, the larger threshold of the two applies.

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

  restored = []

  def restored_model():
    if not restored:  # The weights once, and only if there is work.
      with strategy.scope():
        inference.restore_model(model, prefix)
      restored.append(True)
    return model

  tta_fn = inference.make_tta_fn(scales, flip)
  teacher.update(_fitted_settings(
      output_dir, restored_model, tta_fn, records, task.info, ego_car_void,
      class_balance_frames, batch_size, eval_pad_size, strategy,
      class_balance_records, class_confidence_quantile))
  if teacher.get('class_log_bias') is not None:
    tta_fn = class_balance.with_log_bias(tta_fn, teacher['class_log_bias'])
  thresholds = teacher.get('class_confidence_thresholds')
  if confidence_threshold:
    thresholds = np.maximum(thresholds or 0.0, np.full(
        task.info.num_classes, confidence_threshold, np.float32)).tolist()
  if file_io.is_done(output_dir):
    settings = label_settings.label_settings(
        records, task.info, ego_car_void, eval_pad_size, num_shards, teacher)
    label_settings.compare_settings(output_dir, settings,
                                    ignore=label_settings.SPLIT_SETTINGS)
    logging.info('%s is DONE; nothing to label', output_dir)
    return output_dir

  def build_infer():
    restored_model()
    with strategy.scope():
      return inference.make_inference_fn(model, task.build_post_processor(),
                                         tta_fn)

  result = write_pseudo_labels(
      build_infer, records, output_dir, task.info, ego_car_void=ego_car_void,
      batch_size=batch_size, eval_pad_size=eval_pad_size, shard=shard,
      num_shards=num_shards, strategy=strategy, max_frames=max_frames,
      settings=teacher, confidence_thresholds=thresholds)
  if result['complete'] and not label_folder.pending_shards(output_dir):
    label_folder.merge_pseudo_labels(output_dir, task.info)
    return output_dir
  return None
