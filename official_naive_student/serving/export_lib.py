"""Checkpoint -> SavedModel in the `<export_dir>/<version>/` layout TF Serving watches.

`export` restores a trainer checkpoint into the task's model, wraps it in a
`PanopticExportModule` and saves it to a temporary folder that is renamed to
`<export_dir>/<version>` only when complete (`core/file_io.atomic_dir`): a model
server polling `export_dir` never loads half a model, because it only picks
up folders whose name is an integer and the temporary one is not. Next to the
model, `assets.extra/export_config.json` records the label space and the
export options, so clients can colour and convert the outputs (TF Serving
ignores `assets.extra`).
"""

import dataclasses
import os
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import logging
import gin
import tensorflow as tf

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import inference
from official_naive_student.serving import export_module
from official_naive_student.tasks import panoptic_deeplab

EXPORT_CONFIG = os.path.join('assets.extra', 'export_config.json')


def build_task_from_gin(scope: Optional[str] = None):
  """The gin-bound `PanopticDeepLabTask` (optionally under a role scope).

  Export needs only its label space, model and post-processor; the task
  builds its data pipelines only when read, so export never touches the data.
  """
  with gin.config_scope(scope):
    return gin.get_configurable(panoptic_deeplab.PanopticDeepLabTask)()


def default_version() -> int:
  """Unix time in seconds: increasing, so TF Serving serves the newest export."""
  return max(1, int(time.time()))


def export_config(info: datasets.DatasetInfo,
                  module: export_module.PanopticExportModule,
                  checkpoint: str) -> Dict[str, Any]:
  """What a client needs besides the tensors: label space and options."""
  return {
      'dataset': dataclasses.asdict(info),
      'checkpoint': checkpoint,
      'input_size': list(module.input_size) if module.input_size else None,
      'tta_scales': list(module.tta_scales),
      'tta_flip': module.tta_flip,
      'max_pixels': module.budget.max_pixels,
      'signatures': {
          export_module.SERVING_DEFAULT: export_module.ENCODED_IMAGES,
          export_module.SERVE_IMAGES: export_module.IMAGES},
  }


def save_module(module: export_module.PanopticExportModule, export_dir: str,
                version: Optional[int] = None,
                config: Optional[Dict[str, Any]] = None,
                overwrite: bool = False) -> str:
  """Saves `module` as `<export_dir>/<version>/` atomically; returns that path.

  Raises:
    FileExistsError: the version exists and `overwrite` is False (a server may
      be serving it).
  """
  version = default_version() if version is None else int(version)
  if version < 0:
    raise ValueError(f'version must be a non-negative integer, got {version}')
  target = os.path.join(export_dir, str(version))
  if os.path.exists(target) and not overwrite:
    raise FileExistsError(f'{target} exists; choose another --version')
  os.makedirs(export_dir, exist_ok=True)
  with file_io.atomic_dir(target) as tmp:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    if config is not None:
      file_io.atomic_write_json(os.path.join(tmp, EXPORT_CONFIG), config)
  logging.info('Exported SavedModel to %s', target)
  return target


def export(task, checkpoint: str, export_dir: str,
           version: Optional[int] = None,
           input_size: Optional[Tuple[int, int]] = None,
           tta_scales: Sequence[float] = (1.0,), tta_flip: bool = False,
           include_semantic_probs: bool = False,
           max_pixels: Optional[int] = None,
           overwrite: bool = False) -> str:
  """Restores `checkpoint` into `task`'s model and exports it for serving.

  Args:
    task: a `PanopticDeepLabTask` (model, post-processor and label space).
    checkpoint: checkpoint prefix, checkpoint folder, or trainer model_dir.
    export_dir: the model base path TF Serving watches.
    version: the integer sub-folder (default: unix time).
    input_size, tta_scales, tta_flip, include_semantic_probs, max_pixels: see
      `PanopticExportModule`.
    overwrite: replace an existing version.

  Returns:
    The path of the exported SavedModel, `<export_dir>/<version>`.
  """
  model, path = inference.load_model(task.build_model, checkpoint)
  module = export_module.PanopticExportModule(
      model, task.build_post_processor(), input_size=input_size,
      tta_scales=tta_scales, tta_flip=tta_flip,
      include_semantic_probs=include_semantic_probs, max_pixels=max_pixels)
  return save_module(module, export_dir, version,
                     export_config(task.info, module, path), overwrite)


def read_export_config(saved_model_dir: str) -> Optional[Dict[str, Any]]:
  """The `export_config.json` of an export, or None (another exporter)."""
  path = os.path.join(saved_model_dir, EXPORT_CONFIG)
  return file_io.read_json(path) if os.path.exists(path) else None


def dataset_info_from_config(config: Optional[Dict[str, Any]]
                             ) -> datasets.DatasetInfo:
  """The DatasetInfo an export was made with (Cityscapes when unknown)."""
  if not config or 'dataset' not in config:
    return datasets.CITYSCAPES
  fields = dict(config['dataset'])
  for key in ('class_names', 'thing_train_ids', 'train_id_to_label_id'):
    fields[key] = tuple(fields.get(key, ()))
  fields['colormap'] = tuple(tuple(c) for c in fields.get('colormap', ()))
  return datasets.DatasetInfo(**fields)
