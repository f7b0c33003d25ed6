"""Imports a published DeepLab2 checkpoint as a model checkpoint of ours.

  python -m official_naive_student.tools.import_checkpoint --format deeplab2 \\
      --checkpoint wide_resnet41_os16_panoptic_deeplab_cityscapes_trainfine \\
      --config wide_resnet41_os16.textproto --output_dir runs/wr41_deeplab2

The checkpoint is read with `tf.train.load_checkpoint` alone (no DeepLab2 code).
Its shapes decide the network (`modeling/deeplab2_names.infer_options`, preset
`panoptic_deeplab_wr41_deeplab2`); the textproto, when given, adds what shapes
cannot tell: output stride, atrous rates, label space and post-processing.
Every DeepLab2 variable must land on exactly one variable of ours with the same
shape and every variable of ours must receive one, else the import fails and
names them. A checkpoint holding only the `encoder` (DeepLab2's ImageNet
checkpoints) initializes the backbone; the decoders and heads stay fresh and
are listed. Training state (`global_step`, `optimizer` and its slots) is
skipped.

`output_dir` receives `tf.train.Checkpoint(model=...)` (what
`Trainer.init_checkpoint`, the pseudo-label stage, `predict.py` and
`export_saved_model.py` restore) and `model.gin`, the bindings of the network,
label space and post-processing, so that
  python export_saved_model.py --gin_file DIR/model.gin --checkpoint DIR ...
works as is.

`--format deeplab_tf1` reads the TF1 DeepLab model zoo's ImageNet Xception-71
(`xception_71_2018_05_09.tar.gz`, a name-based TF-Slim checkpoint;
`modeling/deeplab_tf1_names.py` maps its names) into preset
`panoptic_deeplab_x71`: the checkpoint initializes the backbone, every backbone
variable must receive a value, decoders and heads stay fresh and are listed;
the ImageNet `logits` and `global_step` are skipped and counted. Any other
variable is an error naming it (`--skip_items` takes regular expressions of
names to leave out, e.g. 'ExponentialMovingAverage$').

  python -m official_naive_student.tools.import_checkpoint \\
      --format deeplab_tf1 --checkpoint xception_71/model.ckpt \\
      --output_dir runs/x71_imagenet
"""

import dataclasses
import functools
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import trackable_object_graph_pb2
from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import checkpoint_utils
from official_naive_student.core import inference
from official_naive_student.modeling import deeplab2_names
from official_naive_student.modeling import deeplab_tf1_names
from official_naive_student.modeling import presets
from official_naive_student.tools import deeplab2_config

PRESET = 'panoptic_deeplab_wr41_deeplab2'
TF1_PRESET = 'panoptic_deeplab_x71'
GIN_FILE = 'model.gin'
CHECKPOINT_NAME = 'ckpt'
_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_SLOT_MARK = '/.OPTIMIZER_SLOT/'
_OBJECT_GRAPH = '_CHECKPOINTABLE_OBJECT_GRAPH'


class CheckpointMismatchError(ValueError):
  """The checkpoint does not map one-to-one onto the network we build."""


@dataclasses.dataclass
class ImportReport:
  """What an import did, variable by variable (DeepLab2 key -> our path)."""
  mapped: Dict[str, str]
  fresh: List[str]
  skipped: List[str]
  model_options: Dict[str, Any]
  preset: str = PRESET
  source_format: str = 'DeepLab2'

  def summary(self) -> str:
    return (f'{len(self.mapped)} variables imported, {len(self.fresh)} of '
            f'ours left fresh, {len(self.skipped)} checkpoint values '
            'skipped (training state, classifier)')


def read_deeplab2_checkpoint(
    path: str, skip_items: Sequence[str] = ()
) -> Tuple[Any, Dict[Tuple[str, str], str], List[str]]:
  """Splits a DeepLab2 checkpoint into network variables and training state.

  Args:
    path: checkpoint prefix, or a folder holding one.
    skip_items: further top-level items to leave out (e.g. a classifier).

  Returns:
    (reader, {(item, path inside item): checkpoint key}, skipped keys).

  Raises:
    CheckpointMismatchError: an item we have no counterpart for, or values
      no item reaches.
  """
  path = inference.resolve_checkpoint(path)
  reader = tf.train.load_checkpoint(path)
  keys = set(reader.get_variable_to_shape_map()) - {_OBJECT_GRAPH}
  network, skipped, unknown = {}, [], []
  for item in _top_level_items(reader):
    paths = checkpoint_utils.checkpoint_paths(reader, item)
    if item in deeplab2_names.TRAINING_STATE_ITEMS or item in skip_items:
      skipped.extend(paths.values())
    elif item in deeplab2_names.ITEMS:
      for object_path, key in paths.items():
        inner = object_path[len(item) + 1:-len(_VALUE_SUFFIX)]
        network[(item, inner)] = key
    elif paths:
      unknown.append(item)
  if unknown:
    raise CheckpointMismatchError(
        f'{path}: checkpoint items {unknown} have no counterpart in our '
        f'model (known: {sorted(deeplab2_names.ITEMS)}; training state '
        f'{deeplab2_names.TRAINING_STATE_ITEMS}); pass --skip_items to '
        'leave them out')
  skipped.extend(k for k in keys if _SLOT_MARK in k)
  unreached = sorted(keys - set(network.values()) - set(skipped))
  if unreached:
    raise CheckpointMismatchError(
        f'{path}: values no checkpoint item reaches: {unreached[:20]}')
  if not network:
    raise CheckpointMismatchError(
        f'{path}: no DeepLab2 network variables (items '
        f'{sorted(deeplab2_names.ITEMS)})')
  return reader, network, sorted(skipped)


def _top_level_items(reader) -> List[str]:
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH))
  return [child.local_name for child in graph.nodes[0].children]


def build_options(shapes: Dict[Tuple[str, str], Sequence[int]],
                  settings: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """`build_panoptic_deeplab` overrides (and num_classes) for the checkpoint."""
  try:
    options = deeplab2_names.infer_options(shapes)
  except ValueError as e:
    raise CheckpointMismatchError(str(e)) from None
  if settings:
    stride = int(settings['output_stride'])
    options['output_stride'] = stride
    if settings['atrous_rates']:
      # Our builder takes rates at OS16 and scales them to the output stride.
      rates = tuple(r * stride / 16 for r in settings['atrous_rates'])
      if any(r != int(r) for r in rates):
        raise CheckpointMismatchError(
            f'atrous rates {settings["atrous_rates"]} at output stride '
            f'{stride} have no integer OS16 rates')
      options['atrous_rates'] = tuple(int(r) for r in rates)
  return options


def _path(model, variable) -> str:
  """A variable's path inside the model, e.g. 'backbone/stem/conv/kernel'."""
  return variable.path[len(model.name) + 1:] if variable.path.startswith(
      model.name + '/') else variable.path


def _resolve(model, attribute: str):
  value = model
  for name in attribute.split('.'):
    value = getattr(value, name, None)
    if value is None:
      return None
  return value


def _copy_values(model, reader, preset: str,
                 entries: Sequence[Tuple[str, str, Callable[[], str]]]
                 ) -> Tuple[Dict[str, str], Dict[int, str], List[str]]:
  """Copies each checkpoint value into the variable of ours it maps to.

  Args:
    model: our built network.
    reader: the checkpoint's reader.
    preset: our network's name, for messages.
    entries: (name in messages, checkpoint key, `fn() -> our attribute path`
      that raises KeyError for a name that maps nowhere).

  Returns:
    ({name: our path}, {id of each variable assigned: name}, errors).
  """
  shapes = reader.get_variable_to_shape_map()
  errors, mapped, taken = [], {}, {}
  for name, key, attribute_of in entries:
    try:
      attribute = attribute_of()
    except KeyError as e:
      errors.append(str(e).strip('"\''))
      continue
    variable = _resolve(model, attribute)
    if variable is None or not hasattr(variable, 'assign'):
      errors.append(f'{name}: maps to model.{attribute}, which our '
                    f'{preset} network does not have')
    elif tuple(variable.shape) != tuple(shapes[key]):
      errors.append(f'{name}: shape {tuple(shapes[key])} in the checkpoint, '
                    f'{tuple(variable.shape)} in ours (model.{attribute})')
    elif id(variable) in taken:
      errors.append(f'{name}: model.{attribute} already takes '
                    f'{taken[id(variable)]}')
    else:
      taken[id(variable)] = name
      variable.assign(np.asarray(reader.get_tensor(key), np.float32))
      mapped[name] = _path(model, variable)
  return mapped, taken, errors


def _assign(model, reader, network: Dict[Tuple[str, str], str],
            low_level: Sequence[str]) -> Tuple[Dict[str, str], set, List[str]]:
  """Copies each DeepLab2 value into its variable of ours.

  Returns:
    ({DeepLab2 name: our path}, ids of the variables assigned, errors).
  """
  entries = [(f'{item}/{inner}', key, functools.partial(
      deeplab2_names.our_attribute, item, inner, low_level))
             for (item, inner), key in sorted(network.items())]
  mapped, taken, errors = _copy_values(model, reader, PRESET, entries)
  return mapped, set(taken), errors


def import_deeplab2(checkpoint: str, config: Optional[str] = None,
                    num_classes: Optional[int] = None,
                    skip_items: Sequence[str] = ()):
  """Builds our network for a DeepLab2 checkpoint and copies every weight in.

  Args:
    checkpoint: DeepLab2 checkpoint prefix or folder.
    config: DeepLab2 textproto path, or None.
    num_classes: class count for a checkpoint without a semantic head
      (default: the textproto's, else Cityscapes').
    skip_items: top-level checkpoint items to leave out.

  Returns:
    (model, ImportReport, settings from the textproto or None).

  Raises:
    CheckpointMismatchError: naming every variable that maps nowhere, twice
      or onto a variable of another shape, and (for a full network) every
      variable of ours left without a value.
  """
  reader, network, skipped = read_deeplab2_checkpoint(checkpoint, skip_items)
  shapes = reader.get_variable_to_shape_map()
  settings = deeplab2_config.optional_settings(config) or {}
  options = build_options({name: shapes[key] for name, key in network.items()},
                          settings)
  num_classes = (options.pop('num_classes', None) or num_classes
                 or settings.get('num_classes')
                 or datasets.get_dataset_info('cityscapes').num_classes)
  model = presets.build_panoptic_deeplab(PRESET, num_classes=num_classes,
                                         **options)
  model(tf.zeros([1, 65, 65, 3]), training=False)
  mapped, taken, errors = _assign(
      model, reader, network,
      settings.get('low_level_features') or ('res3', 'res2'))
  fresh = sorted(_path(model, v) for v in model.weights if id(v) not in taken)
  if {item for item, _ in network} == {deeplab2_names.ENCODER}:
    # Backbone only (ImageNet): decoders and heads may stay fresh.
    fresh_backbone = sorted(_path(model, v) for v in model.backbone.weights
                            if id(v) not in taken)
    if fresh_backbone:
      errors.append(f'backbone variables without a value: {fresh_backbone}')
  elif fresh:
    errors.append(f'variables of ours without a DeepLab2 value: {fresh}')
  if errors:
    raise CheckpointMismatchError(
        f'{checkpoint} does not map onto {PRESET} ({len(errors)} problems):'
        '\n  ' + '\n  '.join(errors))
  options['num_classes'] = num_classes
  report = ImportReport(mapped, fresh, skipped, options)
  logging.info('Imported %s: %s', checkpoint, report.summary())
  return model, report, settings or None


def import_deeplab_tf1(checkpoint: str, num_classes: Optional[int] = None,
                       skip_patterns: Sequence[str] = ()):
  """Builds preset `panoptic_deeplab_x71`; a TF1 xception_71 fills its backbone.

  Args:
    checkpoint: TF1 checkpoint prefix (e.g. `.../model.ckpt`) or folder.
    num_classes: classes of the semantic head (default: Cityscapes').
    skip_patterns: regular expressions; names they find are skipped too.

  Returns:
    (model, ImportReport, None).

  Raises:
    CheckpointMismatchError: naming every checkpoint variable that maps
      nowhere, twice or onto a variable of another shape (both shapes), and
      every backbone variable of ours left without a value.
  """
  prefix = inference.resolve_checkpoint(checkpoint)
  reader = tf.train.load_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  if _OBJECT_GRAPH in shapes:
    raise CheckpointMismatchError(
        f'{checkpoint}: an object-based (TF2) checkpoint; use --format '
        'deeplab2 for DeepLab2 checkpoints')
  skipped = sorted(
      n for n in shapes if deeplab_tf1_names.is_skipped(n)
      or any(re.search(p, n) for p in skip_patterns))
  network = sorted(set(shapes) - set(skipped))
  try:
    width = deeplab_tf1_names.infer_width_multiplier(shapes)
  except ValueError as e:
    raise CheckpointMismatchError(f'{checkpoint}: {e}') from None
  options: Dict[str, Any] = {'backbone_kwargs': (
      {'width_multiplier': width} if width != 1 else {})}
  num_classes = (num_classes
                 or datasets.get_dataset_info('cityscapes').num_classes)
  model = presets.build_panoptic_deeplab(TF1_PRESET, num_classes=num_classes,
                                         **options)
  model(tf.zeros([1, 65, 65, 3]), training=False)
  mapped, taken, errors = _copy_values(model, reader, TF1_PRESET, [
      (name, name, functools.partial(deeplab_tf1_names.our_attribute, name))
      for name in network])
  fresh_backbone = sorted(_path(model, v) for v in model.backbone.weights
                          if id(v) not in taken)
  if fresh_backbone:
    expected = deeplab_tf1_names.tf1_names(
        model.backbone.get_config()['num_middle_blocks'])
    missing = sorted(n for n in expected if n not in shapes)
    errors.append(f'backbone variables without a value: {fresh_backbone} '
                  f'(the checkpoint lacks {missing})')
  if errors:
    raise CheckpointMismatchError(
        f'{checkpoint} does not map onto {TF1_PRESET} ({len(errors)} '
        'problems):\n  ' + '\n  '.join(errors))
  fresh = sorted(_path(model, v) for v in model.weights if id(v) not in taken)
  options['num_classes'] = num_classes
  report = ImportReport(mapped, fresh, skipped, options, preset=TF1_PRESET,
                        source_format='TF1 DeepLab')
  logging.info('Imported %s: %s', checkpoint, report.summary())
  return model, report, None


def model_gin(options: Dict[str, Any], dataset: str,
              settings: Optional[Dict[str, Any]], source: str,
              preset: str = PRESET, source_format: str = 'DeepLab2') -> str:
  """Gin bindings of the imported network, label space and post-processing."""
  base = presets.preset_options(preset)
  lines = [
      f'# Written by tools/import_checkpoint.py from the {source_format} '
      'checkpoint',
      f'# {source}.',
      f'# Input normalization: {source_format}\'s image / 127.5 - 1, which',
      '# PanopticDeepLab.normalize_images also applies. DeepLab pools ASPP',
      '# over the training crop (1025x2049: the whole map); ours pools',
      '# globally, the same on full frames.',
      'import official_naive_student.tasks.panoptic_deeplab',
      '',
      f'PanopticDeepLabTask.dataset_name = {dataset!r}',
      'PanopticDeepLabTask.model_fn = @build_panoptic_deeplab',
      f'build_panoptic_deeplab.preset = {preset!r}',
  ]
  for key, value in sorted(options.items()):
    if key == 'num_classes':
      continue
    if key == 'backbone_kwargs':
      if value:
        lines.append(f'build_panoptic_deeplab.{key} = {value!r}')
    elif base.get(key) != value:
      lines.append(f'build_panoptic_deeplab.{key} = {value!r}')
  if settings:
    post = settings['post_processing']
    lines += [
        '',
        '# Post-processing of the textproto\'s evaluator_options. DeepLab2\'s',
        '# pure-TF merge keeps a stuff segment of exactly stuff_area_limit',
        '# pixels; ours (and its C++ op) voids it.',
        'PanopticDeepLabTask.post_processor_fn = @PanopticDeepLabPostProcessor',
        f'PanopticDeepLabPostProcessor.center_threshold = '
        f'{float(post["center_score_threshold"])!r}',
        f'PanopticDeepLabPostProcessor.nms_kernel = {int(post["nms_kernel"])}',
        f'PanopticDeepLabPostProcessor.keep_k = {int(post["keep_k_centers"])}',
        f'PanopticDeepLabPostProcessor.stuff_area_limit = '
        f'{int(post["stuff_area_limit"])}',
        'PanopticDeepLabPostProcessor.stuff_area_reference = None',
    ]
  else:
    lines += ['', '# No --config: the project\'s post-processing defaults.']
  return '\n'.join(lines) + '\n'


def write_output(model, report: ImportReport, output_dir: str, dataset: str,
                 settings: Optional[Dict[str, Any]], source: str) -> str:
  """Saves a `model=` checkpoint and model.gin; returns the checkpoint."""
  if tf.train.latest_checkpoint(output_dir):
    raise FileExistsError(f'{output_dir} already holds a checkpoint')
  tf.io.gfile.makedirs(output_dir)
  prefix = tf.train.Checkpoint(**{common.CKPT_MODEL: model}).save(
      os.path.join(output_dir, CHECKPOINT_NAME))
  with tf.io.gfile.GFile(os.path.join(output_dir, GIN_FILE), 'w') as f:
    f.write(model_gin(report.model_options, dataset, settings, source,
                      report.preset, report.source_format))
  return prefix


def resolve_dataset(settings: Optional[Dict[str, Any]],
                    dataset: Optional[str], num_classes: int) -> str:
  """Our label space for the import: --dataset, else the textproto's."""
  name = dataset or (settings or {}).get('dataset')
  if name is None:
    if settings and settings.get('deeplab2_dataset'):
      raise CheckpointMismatchError(
          f'DeepLab2 dataset {settings["deeplab2_dataset"]!r} has no '
          f'counterpart here ({sorted(deeplab2_config.DATASETS)}); pass '
          '--dataset')
    name = 'cityscapes'
  info = datasets.get_dataset_info(name)
  if info.num_classes != num_classes:
    raise CheckpointMismatchError(
        f'the checkpoint predicts {num_classes} classes, dataset {name!r} '
        f'has {info.num_classes}')
  return name


_FORMAT = flags.DEFINE_enum(
    'format', 'deeplab2', ['deeplab2', 'deeplab_tf1'],
    'Checkpoint format: deeplab2 (object-based DeepLab2 checkpoints) or '
    'deeplab_tf1 (the TF1 DeepLab model zoo\'s name-based xception_71).')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None,
                                  'Checkpoint prefix or folder.')
_CONFIG = flags.DEFINE_string('config', None, 'DeepLab2 textproto (optional).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Output folder.')
_DATASET = flags.DEFINE_string('dataset', None, 'Label space (default: the '
                               'textproto\'s, else cityscapes).')
_NUM_CLASSES = flags.DEFINE_integer(
    'num_classes', None, 'Classes of a backbone-only import (default: the '
    'dataset\'s).')
_SKIP_ITEMS = flags.DEFINE_list('skip_items', [], 'Top-level checkpoint items '
                                'to leave out, e.g. an ImageNet classifier '
                                '(deeplab_tf1: regular expressions searched '
                                'in variable names).')


def main(argv):
  del argv
  if not _CHECKPOINT.value or not _OUTPUT_DIR.value:
    raise app.UsageError('--checkpoint and --output_dir are required')
  num_classes = _NUM_CLASSES.value
  if num_classes is None and _DATASET.value:
    num_classes = datasets.get_dataset_info(_DATASET.value).num_classes
  if _FORMAT.value == 'deeplab_tf1':
    if _CONFIG.value:
      raise app.UsageError('--config is a DeepLab2 textproto; deeplab_tf1 '
                           'takes none')
    model, report, settings = import_deeplab_tf1(
        _CHECKPOINT.value, num_classes, _SKIP_ITEMS.value)
  else:
    model, report, settings = import_deeplab2(
        _CHECKPOINT.value, _CONFIG.value, num_classes, _SKIP_ITEMS.value)
  dataset = resolve_dataset(settings, _DATASET.value,
                            report.model_options['num_classes'])
  prefix = write_output(model, report, _OUTPUT_DIR.value, dataset, settings,
                        _CHECKPOINT.value)
  print(f'{report.summary()}; wrote {prefix} and '
        f'{os.path.join(_OUTPUT_DIR.value, GIN_FILE)}')
  if report.fresh:
    print(f'Fresh (not in the checkpoint): {len(report.fresh)} variables of '
          + ', '.join(sorted({p.split('/')[0] for p in report.fresh})))


if __name__ == '__main__':
  app.run(main)
