"""tf.data input pipeline: TFRecords or files -> decode -> augment -> targets -> batches.

One class serves every stage of Naive-Student: teacher/student training ('train':
random scale/crop/flip + Panoptic-DeepLab targets), evaluation ('eval': no
augmentation, labels kept as panoptic maps) and pseudo-labeling ('unlabeled': images
only, with their ids so predictions can be written back as files).

Conventions:
  * `dataset_fn(input_context)` is what `strategy.distribute_datasets_from_function`
    calls: each input pipeline reads a disjoint part of the data (whole files when
    there are enough, else every n-th example) and batches per replica.
  * Training is reproducible: the shuffles are seeded and example k of pipeline p
    gets the stateless seed (seed, k * num_pipelines + p) for its augmentation, so
    equal seeds give equal batches and pipelines never share a seed.
  * Training batches have fully static shapes (fixed crop, drop_remainder), as
    TPUs need; string ids are left out of training batches for the same reason.

Elements: 'train' and 'eval' give (features, labels) dicts keyed by `common`
(features: IMAGE float32 [B, H, W, 3] in [0, 255]; eval adds IMAGE_NAME and
SEQUENCE_ID; labels: GT_PANOPTIC int32 [B, H, W] plus, in training, the
`targets.encode_targets` dict); 'unlabeled' gives the features dict only.
"""

import re
from typing import Dict, Optional, Sequence, Union

import gin
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student import panoptic_rgb
from official_naive_student.dataloaders import augment
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders import strong_augment as strong_augment_lib
from official_naive_student.dataloaders import targets
from official_naive_student.dataloaders import tfrecord_writer as tfw

MODES = ('train', 'eval', 'unlabeled')
FRAME = 'frame'

_FEATURES = {
    tfw.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    tfw.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
    tfw.SEQUENCE_ID_KEY: tf.io.FixedLenFeature([], tf.string, b''),
    tfw.FRAME_KEY: tf.io.FixedLenFeature([], tf.int64, -1),
    tfw.LABEL_KEY: tf.io.FixedLenFeature([], tf.string, b''),
}


def decode_panoptic_png_tf(data: tf.Tensor) -> tf.Tensor:
  """RGB panoptic PNG bytes -> int32 [H, W] (id = R + 256 G + 65536 B)."""
  rgb = tf.cast(tf.io.decode_png(data, channels=3), tf.int32)
  return panoptic_rgb.rgb_to_ids(rgb)


def decode_image_tf(data: tf.Tensor) -> tf.Tensor:
  """PNG/JPEG bytes -> uint8 [H, W, 3]."""
  image = tf.io.decode_image(data, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def parse_example(serialized: tf.Tensor,
                  with_label: bool) -> Dict[str, tf.Tensor]:
  """Parses and decodes a `tfrecord_writer` example.

  Returns {IMAGE uint8 [H, W, 3], IMAGE_NAME, SEQUENCE_ID, FRAME} and, with
  `with_label`, GT_PANOPTIC int32 [H, W]; then an example without a label
  fails with its image id.
  """
  ex = tf.io.parse_single_example(serialized, _FEATURES)
  out = {common.IMAGE: decode_image_tf(ex[tfw.IMAGE_KEY]),
         common.IMAGE_NAME: ex[tfw.IMAGE_ID_KEY],
         common.SEQUENCE_ID: ex[tfw.SEQUENCE_ID_KEY],
         FRAME: ex[tfw.FRAME_KEY]}
  if with_label:
    check = tf.debugging.Assert(
        tf.strings.length(ex[tfw.LABEL_KEY]) > 0,
        ['Example has no label:', ex[tfw.IMAGE_ID_KEY]])
    with tf.control_dependencies([check]):
      out[common.GT_PANOPTIC] = decode_panoptic_png_tf(ex[tfw.LABEL_KEY])
  return out


def _sizes_agree(example: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """`example`, once its image and label are known to have the same size.

  The validation pass reports this before training; without it (or for
  TFRecords) cropping would silently misalign the two.
  """
  image_size = tf.shape(example[common.IMAGE])[:2]
  label_size = tf.shape(example[common.GT_PANOPTIC])
  check = tf.debugging.Assert(
      tf.reduce_all(tf.equal(image_size, label_size)),
      ['image and label sizes differ: image id', example[common.IMAGE_NAME],
       'image HxW', image_size, 'label HxW', label_size])
  with tf.control_dependencies([check]):
    return {k: tf.identity(v) for k, v in example.items()}


def _resolve_files(file_pattern: Union[str, Sequence[str]]) -> list:
  """Globs, or a conversion folder (its manifest's shards), sorted."""
  patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
  files = []
  for pattern in patterns:
    if tf.io.gfile.isdir(pattern):
      files.extend(tfw.manifest_files(pattern))
    else:
      matched = tf.io.gfile.glob(pattern)
      if not matched:
        raise FileNotFoundError(f'{pattern}: no TFRecord files match')
      files.extend(matched)
  return sorted(files)


@gin.register
class InputPipeline:
  """Builds per-replica `tf.data.Dataset`s for one split and mode."""

  def __init__(self,
               file_pattern: Optional[Union[str, Sequence[str]]] = None,
               records: Optional[Sequence[cityscapes_files.Record]] = None,
               dataset_name: str = 'cityscapes',
               mode: str = 'train',
               global_batch_size: int = 8,
               crop_size: Sequence[int] = (1025, 2049),
               seed: int = 0,
               shuffle_buffer_size: int = 64,
               repeat: Optional[bool] = None,
               drop_remainder: Optional[bool] = None,
               eval_pad_size: Optional[Sequence[int]] = None,
               min_scale: float = 0.5,
               max_scale: float = 2.0,
               scale_step: float = 0.25,
               flip_prob: float = 0.5,
               strong_augment: bool = False,
               sigma: float = 8.0,
               small_instance_area: int = 4096,
               small_instance_weight: float = 3.0,
               ignore_crowd_in_semantic: bool = False,
               cycle_length: int = 4,
               cache_decoded: bool = False):
    """Describes the pipeline; nothing is read until `dataset_fn`.

    Args:
      file_pattern: TFRecord glob(s), or folders written by `tfrecord_writer`.
      records: alternatively, `cityscapes_files.Record`s read straight from
        files (demo, pseudo-labels, CamVid); exactly one source must be given.
      dataset_name: label space (`datasets.get_dataset_info`).
      mode: one of MODES.
      global_batch_size: batch size summed over replicas.
      crop_size: training crop (height, width).
      seed: base seed of shuffling and augmentation.
      shuffle_buffer_size: examples in the training shuffle buffer.
      repeat: loop forever; defaults to True in training only.
      drop_remainder: defaults to True in training only (static batch size).
      eval_pad_size: in 'eval'/'unlabeled', pad images (bottom/right) to this
        static size; None keeps each image's size.
      min_scale: see `augment.preprocess_for_training`.
      max_scale: see `augment.preprocess_for_training`.
      scale_step: see `augment.preprocess_for_training`.
      flip_prob: see `augment.preprocess_for_training`.
      strong_augment: (train) also distort each crop with colour, grayscale,
        blur and a void cutout (`strong_augment`), for a Student on
        pseudo-labels (a switch beyond the paper).
      sigma: center Gaussian sigma of `targets.encode_targets`.
      small_instance_area: see `targets.encode_targets`.
      small_instance_weight: see `targets.encode_targets`.
      ignore_crowd_in_semantic: see `targets.encode_targets`.
      cycle_length: TFRecord files read in parallel.
      cache_decoded: (records only) keep decoded images and labels in memory
        after the first pass, so an epoch over a small split (the demo's
        labeled frames, its pseudo-labels) decodes every file once, not once
        per step; augmentation and targets still run per example. Costs
        H x W x 7 bytes per record of this pipeline's shard.
    """
    if (file_pattern is None) == (records is None):
      raise ValueError('Give exactly one of file_pattern and records.')
    if mode not in MODES:
      raise ValueError(f'mode {mode!r} not in {MODES}')
    self._files = None if file_pattern is None else _resolve_files(file_pattern)
    self._records = None if records is None else list(records)
    if self._records is not None and mode != 'unlabeled':
      unlabeled = [r.image_path for r in self._records if not r.has_label]
      if unlabeled:
        raise ValueError(f'{unlabeled[0]}: image without label in mode '
                         f'{mode!r} ({len(unlabeled)} such records)')
    self._info = datasets.get_dataset_info(dataset_name)
    self.mode = mode
    self.global_batch_size = global_batch_size
    self._crop_size = tuple(crop_size)
    self._seed = seed
    self._shuffle_buffer_size = shuffle_buffer_size
    training = mode == 'train'
    self._repeat = training if repeat is None else repeat
    self._drop_remainder = (training if drop_remainder is None
                            else drop_remainder)
    self._eval_pad_size = eval_pad_size
    self._augment_kwargs = dict(min_scale=min_scale, max_scale=max_scale,
                                scale_step=scale_step, flip_prob=flip_prob)
    if strong_augment and not training:
      raise ValueError(f'strong_augment is for mode train, not {mode!r}')
    self._strong_augment = strong_augment
    self._target_kwargs = dict(
        sigma=sigma, small_instance_area=small_instance_area,
        small_instance_weight=small_instance_weight,
        ignore_crowd_in_semantic=ignore_crowd_in_semantic)
    self._cycle_length = cycle_length
    if cache_decoded and self._records is None:
      raise ValueError('cache_decoded needs records, not TFRecord files')
    self._cache_decoded = cache_decoded

  @property
  def crop_size(self):
    return self._crop_size

  @property
  def num_examples(self) -> Optional[int]:
    """Examples in one pass (records mode), None for TFRecords."""
    return None if self._records is None else len(self._records)

  @property
  def records(self) -> Optional[list]:
    """Records read from files; None for TFRecords (checked at conversion)."""
    return self._records

  @property
  def dataset_info(self) -> datasets.DatasetInfo:
    return self._info

  @property
  def void_id(self) -> int:
    return self._info.ignore_label * self._info.label_divisor

  def _record_source(self, pipeline_id: int, num_pipelines: int, skip: int):
    """Indices into `records`, decoded from files in Python (errors name them).

    In training, elements are (k, example) with k the example's position in this
    pipeline's stream; the first `skip` are dropped before any decoding.
    """
    records, info = self._records, self._info
    names = tf.constant([r.image_id for r in records])
    sequences = tf.constant([r.sequence_id for r in records])
    frames = tf.constant([r.frame for r in records], tf.int64)
    with_label = self.mode != 'unlabeled'

    # Both loaders run in Python so that a bad file's error names it: a failed
    # in-graph decode only says 'Invalid PNG data', not which of 500 files.
    def load_image(index):
      record = records[int(index)]
      try:  # TensorFlow's own decoder, eagerly: the same pixels as in-graph.
        return decode_image_tf(tf.io.read_file(record.image_path))
      except tf.errors.OpError as e:
        # 'Invalid PNG data, size 12354', without TF's node and op names.
        reason = re.sub(r'\{\{.*?\}\}|\[Op:.*', '', e.message).strip()
        raise ValueError(f'{record.image_path}: unreadable, corrupt or '
                         f'truncated image ({reason})') from None

    def load_label(index):
      record = records[int(index)]
      try:
        return decode.decode_label(record, info)
      except Exception as e:  # pylint: disable=broad-except
        message = decode.record_error(record, e)
        if message == str(e):
          raise  # Already names its file: no second traceback in the error.
        raise ValueError(message) from e

    def load(index):
      image = tf.py_function(load_image, [index], tf.uint8)
      out = {common.IMAGE: tf.ensure_shape(image, [None, None, 3]),
             common.IMAGE_NAME: names[index],
             common.SEQUENCE_ID: sequences[index],
             FRAME: frames[index]}
      if with_label:
        panoptic = tf.numpy_function(load_label, [index], tf.int32)
        out[common.GT_PANOPTIC] = tf.ensure_shape(panoptic, [None, None])
      return out

    ds = tf.data.Dataset.range(len(records)).shard(num_pipelines, pipeline_id)
    if self._cache_decoded:
      # Decoded once; the shuffle below permutes cached examples exactly as it
      # would permute their indices (the order depends on seed and count only).
      ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if self.mode == 'train':
      ds = ds.shuffle(len(records), seed=self._seed)
    if self._repeat:
      ds = ds.repeat()
    if self._cache_decoded:
      return ds.enumerate().skip(skip) if self.mode == 'train' else ds
    if self.mode == 'train':
      return ds.enumerate().skip(skip).map(
          lambda k, index: (k, load(index)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)

  def _tfrecord_source(self, pipeline_id: int, num_pipelines: int, skip: int):
    """Shards files (or examples when files are few), interleaves, parses.

    In training, elements are (k, example) as in `_record_source`; skipped
    examples are dropped before parsing.
    """
    files = tf.data.Dataset.from_tensor_slices(self._files)
    shard_files = len(self._files) >= num_pipelines
    if shard_files:
      files = files.shard(num_pipelines, pipeline_id)
    training = self.mode == 'train'
    if training:
      files = files.shuffle(len(self._files), seed=self._seed)
    if self._repeat:
      files = files.repeat()
    ds = files.interleave(
        tf.data.TFRecordDataset, cycle_length=self._cycle_length,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not shard_files:
      ds = ds.shard(num_pipelines, pipeline_id)
    if training:
      ds = ds.shuffle(self._shuffle_buffer_size, seed=self._seed + 1)
    with_label = self.mode != 'unlabeled'
    if training:
      return ds.enumerate().skip(skip).map(
          lambda k, s: (k, parse_example(s, with_label)),
          num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda s: parse_example(s, with_label),
                  num_parallel_calls=tf.data.AUTOTUNE)

  def _train_map(self, pipeline_id: int, num_pipelines: int):
    info = self._info

    def fn(index, example):
      seed = tf.stack([tf.constant(self._seed, tf.int64),
                       index * num_pipelines + pipeline_id])
      example = _sizes_agree(example)
      image, panoptic = augment.preprocess_for_training(
          example[common.IMAGE], example[common.GT_PANOPTIC], seed,
          self._crop_size, label_pad_value=self.void_id,
          **self._augment_kwargs)
      image = tf.ensure_shape(image, list(self._crop_size) + [3])
      panoptic = tf.ensure_shape(panoptic, list(self._crop_size))
      if self._strong_augment:
        # A seed of its own: the geometric draws stay those of a plain run.
        image, panoptic = strong_augment_lib.strong_augment(
            image, panoptic,
            tf.random.experimental.stateless_fold_in(seed, 1), self.void_id)
      labels = targets.encode_targets(
          panoptic, info.thing_train_ids, info.label_divisor,
          info.ignore_label, **self._target_kwargs)
      labels[common.GT_PANOPTIC] = panoptic
      return {common.IMAGE: image}, labels
    return fn

  def _eval_map(self, example):
    if common.GT_PANOPTIC in example:
      example = _sizes_agree(example)
    image, panoptic = augment.preprocess_for_eval(
        example[common.IMAGE], example.get(common.GT_PANOPTIC),
        pad_to_size=self._eval_pad_size,
        label_pad_value=self.void_id)
    features = {common.IMAGE: image,
                common.IMAGE_NAME: example[common.IMAGE_NAME],
                common.SEQUENCE_ID: example[common.SEQUENCE_ID]}
    if panoptic is None:
      return features
    return features, {common.GT_PANOPTIC: panoptic}

  def per_replica_batch_size(
      self, input_context: Optional[tf.distribute.InputContext] = None) -> int:
    if input_context is None:
      return self.global_batch_size
    return input_context.get_per_replica_batch_size(self.global_batch_size)

  def dataset_fn(
      self, input_context: Optional[tf.distribute.InputContext] = None,
      start_step: int = 0) -> tf.data.Dataset:
    """The dataset of one input pipeline (all of it without `input_context`).

    Args:
      input_context: from `strategy.distribute_datasets_from_function`.
      start_step: training steps already done (a resumed job): the examples
        those steps consumed are skipped before decoding, so a resumed run sees
        exactly the batches an uninterrupted run would.
    """
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    skip = start_step * self.global_batch_size // num_pipelines
    if self._records is not None:
      ds = self._record_source(pipeline_id, num_pipelines, skip)
    else:
      ds = self._tfrecord_source(pipeline_id, num_pipelines, skip)
    if self.mode == 'train':
      ds = ds.map(self._train_map(pipeline_id, num_pipelines),
                  num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = ds.map(self._eval_map, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(self.per_replica_batch_size(input_context),
                  drop_remainder=self._drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

  __call__ = dataset_fn

