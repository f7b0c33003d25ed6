"""Pseudo-labeling stage of Naive-Student: a Teacher labels unlabeled video frames.

Naive-Student (Chen et al., ECCV 2020, Sec. 3-4) labels every unlabeled frame with
the Teacher's test-time-augmented prediction (multi-scale inputs + left-right
flip, averaging semantic probabilities, center heatmaps and offsets), voids the
ego car of each snippet, and trains the Student on these hard labels. The loop
closes through files: labels are written in exactly the panoptic format of
cityscapesscripts' `csCreatePanopticImgs` (one COCO json plus RGB PNGs, id = R +
256 G + 65536 B, `category_id` = label id, iscrowd 0 on every predicted
segment), so the Student reads them with
`cityscapes_files.find_records(panoptic_json=...)` and the same `InputPipeline`
as human labels.

Output folder:
  cityscapes_panoptic_pseudo/<image_id>_panoptic.png   one PNG per frame
  segments/<image_id>.json                              its json entry (fragment)
  shards/shard-<i>-of-<n>.json                          shard i finished
  settings.json                                         what produced the labels
  cityscapes_panoptic_pseudo.json                       merged json (last but one)
  DONE                                                  written last

settings.json records what the labels depend on (`label_settings`: the
Teacher's checkpoint by a fingerprint of its contents, its network, TTA,
precision, the frames...); a run with other settings fails before any work,
even on a finished folder, naming the keys that differ, unless told to
`overwrite` (start over).

Every file is written to a temporary name and renamed. A frame is done when its
fragment exists (it is written after its PNG), so a killed run resumes where it
stopped. `shard i of n` labels records[i::n] of the records sorted by image id;
independent processes cover every frame once, and whichever finishes last merges
the fragments (`merge_pseudo_labels`, also callable on its own).

CLI: python -m official_naive_student.naive_student.pseudo_label_stage
  --gin_file F --teacher_checkpoint DIR --output_dir DIR [--shard i --num_shards n]
  [--cityscapes_root R --split train-sequence] [--hidden_gt_root G] [--overwrite]
"""

import argparse
import functools
import json
import os
import shutil
import sys
from typing import Callable, Dict, Optional, Sequence

if __name__ == '__main__':
  # `python -m` runs this file as __main__, and the gin files import it again
  # under its package name: two registered `pseudo_label`s would make every
  # binding of it ambiguous. Run the package module instead, before this copy
  # registers anything.
  from official_naive_student.naive_student import pseudo_label_stage
  sys.exit(pseudo_label_stage.main())

from absl import logging
import gin
import numpy as np
from PIL import Image
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import gin_utils
from official_naive_student.core import inference
from official_naive_student.core import progress as progress_lib
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.evaluation import cityscapes_results
from official_naive_student.naive_student import ego_car
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import label_settings
from official_naive_student.tasks import panoptic_deeplab as task_lib

LABEL_NAME = 'cityscapes_panoptic_pseudo'
SEGMENTS_DIR = 'segments'
SHARDS_DIR = 'shards'
SETTINGS_FILE = label_settings.SETTINGS_FILE
SettingsMismatchError = label_settings.SettingsMismatchError
_PNG_SUFFIX = '_panoptic.png'
# A temporary file untouched this long belongs to a killed writer, whichever.
STALE_SECONDS = 3600

Record = cityscapes_files.Record


def panoptic_json_path(output_dir: str) -> str:
  """The merged json; its PNGs are in the folder of the same name."""
  return os.path.join(output_dir, LABEL_NAME + '.json')


def _png_dir(output_dir: str) -> str:
  return os.path.join(output_dir, LABEL_NAME)


def fragment_path(output_dir: str, image_id: str) -> str:
  return os.path.join(output_dir, SEGMENTS_DIR, image_id + '.json')


def _shard_marker(output_dir: str, shard: int, num_shards: int) -> str:
  return os.path.join(output_dir, SHARDS_DIR,
                      f'shard-{shard:05d}-of-{num_shards:05d}.json')


def shard_records(records: Sequence[Record], shard: int = 0,
                  num_shards: int = 1) -> list:
  """records[shard::num_shards] of the records sorted by image id.

  Sorting first makes the split independent of the caller's order, so processes
  that found the records separately still partition them exactly.
  """
  if not 0 <= shard < num_shards:
    raise ValueError(f'shard {shard} is not in [0, num_shards={num_shards})')
  ordered = sorted(records, key=lambda r: r.image_id)
  for a, b in zip(ordered, ordered[1:]):
    if a.image_id == b.image_id:
      raise ValueError(f'{b.image_path}: image id {b.image_id} appears twice '
                       f'(also {a.image_path})')
  return ordered[shard::num_shards]


def write_frame(output_dir: str, image_id: str, panoptic: np.ndarray,
                dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> dict:
  """Writes one frame's panoptic ids [H, W]: its PNG, then its json fragment.

  The fragment comes last: its presence is what marks the frame done.
  """
  annotation = cityscapes_results.write_panoptic_png(
      _png_dir(output_dir), image_id, panoptic, dataset)
  file_io.atomic_write_json(fragment_path(output_dir, image_id), annotation,
                            indent=None)
  return annotation


def _remove_stale_temporaries(output_dir: str, shard: int, num_shards: int,
                              image_ids) -> None:
  """Deletes temporaries of killed writers: this shard's now, others' when old.

  Other shards may be running and writing theirs (frames, their marker, the
  settings, the merged json), so those go only after `STALE_SECONDS`.
  """
  marker = os.path.basename(_shard_marker(output_dir, shard, num_shards))
  owned = {
      _png_dir(output_dir):
          lambda target: target[:-len(_PNG_SUFFIX)] in image_ids,
      os.path.join(output_dir, SEGMENTS_DIR):
          lambda target: target[:-len('.json')] in image_ids,
      os.path.join(output_dir, SHARDS_DIR): lambda target: target == marker,
      output_dir: lambda target: False,
  }
  for folder, own in owned.items():
    removed = file_io.remove_temporaries(folder, own, STALE_SECONDS)
    if removed:
      logging.info('Removed %d temporaries of killed writers in %s',
                   len(removed), folder)


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
    output_dir: the pseudo-label folder.
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
  mine = shard_records(records, shard, num_shards)
  label_settings.check_settings(output_dir, label_settings.label_settings(
      records, dataset, ego_car_void, eval_pad_size, num_shards, settings))
  _remove_stale_temporaries(output_dir, shard, num_shards,
                            {r.image_id for r in mine})
  todo = [r for r in mine
          if not os.path.exists(fragment_path(output_dir, r.image_id))]
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
      write_frame(output_dir, image_id, panoptic, dataset)
      written += 1
      progress.update()
  complete = skipped + written == len(mine)
  if complete:
    file_io.atomic_write_json(_shard_marker(output_dir, shard, num_shards),
                              {'frames': len(mine)})
  logging.info('pseudo_label shard %d/%d: %d frames written, %d already done%s',
               shard, num_shards, written, skipped,
               ', shard complete' if complete else '')
  return {'written': written, 'skipped': skipped, 'complete': complete}


def remove_labels(output_dir: str) -> None:
  """Deletes what this stage wrote in `output_dir`; other files stay.

  DONE goes first and settings.json last: a run killed in between leaves a
  folder that is neither finished nor reusable with other settings.
  """
  for name in (file_io.DONE_MARKER, LABEL_NAME + '.json'):
    if os.path.exists(os.path.join(output_dir, name)):
      os.remove(os.path.join(output_dir, name))
  for name in (SHARDS_DIR, SEGMENTS_DIR, LABEL_NAME):
    shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
  if os.path.exists(os.path.join(output_dir, SETTINGS_FILE)):
    os.remove(os.path.join(output_dir, SETTINGS_FILE))


def pending_shards(output_dir: str) -> Optional[list]:
  """Shards of settings.json without a marker yet (None: no settings.json)."""
  settings = label_settings.read_settings(output_dir)
  if settings is None:
    return None
  n = settings['num_shards']
  return [i for i in range(n)
          if not os.path.exists(_shard_marker(output_dir, i, n))]


def merge_pseudo_labels(output_dir: str,
                        dataset: datasets.DatasetInfo = datasets.CITYSCAPES
                        ) -> str:
  """Merges the per-frame fragments into the panoptic json, then writes DONE.

  Any process may run it once all shards are done; running it twice writes the
  same files. Without settings.json (labels written with `write_frame` directly)
  every fragment present is merged.

  Returns:
    The json path.

  Raises:
    RuntimeError: a shard is not done, or the fragments do not add up.
  """
  settings = label_settings.read_settings(output_dir)
  pending = pending_shards(output_dir)
  if pending:
    raise RuntimeError(f'{output_dir}: shards {pending} of '
                       f'{settings["num_shards"]} are not done')
  folder = os.path.join(output_dir, SEGMENTS_DIR)
  names = sorted(n for n in os.listdir(folder)
                 if n.endswith('.json') and '.tmp-' not in n)
  if settings is not None and len(names) != settings['num_records']:
    raise RuntimeError(f'{folder}: {len(names)} frames labeled, settings.json '
                       f'expects {settings["num_records"]}')
  annotations = []
  for name in names:
    annotation = file_io.read_json(os.path.join(folder, name))
    png = os.path.join(_png_dir(output_dir), annotation['file_name'])
    if not os.path.exists(png):
      raise RuntimeError(f'{os.path.join(folder, name)}: its PNG {png} is '
                         'missing')
    annotations.append(annotation)
  json_path = panoptic_json_path(output_dir)
  cityscapes_results.write_panoptic_json(json_path, annotations, dataset)
  file_io.mark_done(output_dir, {'frames': len(annotations),
                                 'panoptic_json': json_path})
  logging.info('Merged %d pseudo-labels into %s', len(annotations), json_path)
  return json_path


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
    output_dir: the pseudo-label folder (see the module docstring).
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
    overwrite: delete the folder's labels first (`remove_labels`) and start
      over; run it alone, not while other shards are labeling.
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
  # The network alone (cheap), for the settings; its weights only if needed.
  model = inference.build_model(build_model, precision, strategy)
  teacher = label_settings.teacher_settings(prefix, model, scales, flip)
  if confidence_threshold:
    teacher['confidence_threshold'] = confidence_threshold
  if overwrite:
    remove_labels(output_dir)
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
  if result['complete'] and not pending_shards(output_dir):
    merge_pseudo_labels(output_dir, task.info)
    return output_dir
  return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  for flag in ('--gin_file', '--gin_bindings'):
    parser.add_argument(flag, action='append', default=[])
  for flag in ('--teacher_checkpoint', '--output_dir', '--hidden_gt_root',
               '--cityscapes_root'):  # Without a root, gin binds the records.
    parser.add_argument(flag, default=None)
  parser.add_argument('--split', default='train-sequence')
  parser.add_argument('--shard', type=int, default=0)
  parser.add_argument('--num_shards', type=int, default=1)
  parser.add_argument('--merge_only', action='store_true')
  parser.add_argument('--overwrite', action='store_true',
                      help='delete the labels in --output_dir and start over '
                      '(run alone, not next to other shards)')
  parser.add_argument('--dataset_name', default='cityscapes',
                      help='label space of the labels (cityscapes, camvid, '
                      'synthetic), for --merge_only and --hidden_gt_root')
  args = parser.parse_args(argv)
  gin_utils.parse_gin(args.gin_file, args.gin_bindings)
  info = datasets.get_dataset_info(args.dataset_name)
  if args.merge_only:
    merge_pseudo_labels(args.output_dir, info)
  else:
    kwargs = {}
    if args.cityscapes_root:
      kwargs['records'] = cityscapes_files.find_records(args.cityscapes_root,
                                                        args.split)
    try:
      finished = gin.get_configurable(pseudo_label)(
          args.teacher_checkpoint, args.output_dir, shard=args.shard,
          num_shards=args.num_shards, overwrite=args.overwrite, **kwargs)
    except SettingsMismatchError as e:
      print(e, file=sys.stderr, flush=True)
      return 1
    if finished is None:
      print(f'{args.output_dir}: shard {args.shard} done, others pending')
      return 0
  print(f'{args.output_dir}: done')
  if args.hidden_gt_root:
    quality = label_quality.measure_pseudo_label_quality(
        panoptic_json_path(args.output_dir), args.hidden_gt_root, dataset=info)
    print(json.dumps(quality, sort_keys=True))
  return 0

