"""PanopticDeepLabTask: what the trainer needs to train and evaluate Panoptic-DeepLab.

A single-replica view of one experiment, as the Model Garden's `Task`: it builds the
model, the losses and the per-replica datasets, and evaluates a model. The trainer
(`core/trainer.py`) owns strategies, optimizers and checkpoints; the task owns
everything that is about panoptic segmentation. All parts are injected by gin.

A Student's task trains on pseudo-labels that exist only once the Teacher has
labeled: it is given `pseudo_label_records` (records as a function of the
pseudo-label json) and gets the json as a value, `with_pseudo_labels(json)`.

The pipelines are given as factories and built on first read: a run builds
only what it reads (training the train pipeline, evaluation the eval one), and
exporting or labeling with a task builds none, so it neither scans nor needs
the labeled and evaluation splits.
"""

import copy
import os
from typing import Callable, Dict, Optional

import gin
import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import evaluator
from official_naive_student.core import inference
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.evaluation import cityscapes_results
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.losses import panoptic_losses
from official_naive_student.modeling import presets
from official_naive_student.post_processing import panoptic as post_lib

# Functions from other modules that gin files bind (they stay undecorated there).
gin.external_configurable(cityscapes_files.find_records, module='cityscapes_files')
gin.external_configurable(cityscapes_files.mix_pseudo_labels,
                          module='cityscapes_files')

# Sub-folders of an evaluation's `results_dir`, one per official evaluator.
RESULT_KINDS = ('semantic', 'instance', 'panoptic')


PipelineFactory = Callable[[], input_pipeline.InputPipeline]
_UNBUILT = object()


def _check_factory(name: str, value) -> Optional[PipelineFactory]:
  """`value` if it is a pipeline factory (or None); a built pipeline is refused.

  A built pipeline was made when the task was, so every run of the task
  (export, labeling) would scan its files; the message names the fix.
  """
  # A built pipeline is callable too (`__call__` is its `dataset_fn`).
  built = hasattr(value, 'dataset_fn') and not isinstance(value, type)
  if value is None or (callable(value) and not built):
    return value
  raise TypeError(
      f'PanopticDeepLabTask.{name} takes a pipeline factory, `() -> '
      f'InputPipeline`, not a built {type(value).__name__}: in gin, bind it '
      f'without parentheses (`PanopticDeepLabTask.{name} = '
      f'@labeled/InputPipeline`, not `@labeled/InputPipeline()`); in Python, '
      f'pass `lambda: pipeline` or `functools.partial(InputPipeline, ...)`')


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
  """[..., H, W] class ids -> [..., H, W, 3] uint8 colours (ids >= 256 clipped)."""
  return palette[np.clip(labels, 0, 255)]


@gin.register
class PanopticDeepLabTask:
  """Builds model, losses, inputs and metrics of a Panoptic-DeepLab experiment.

  Args:
    train_data: `() -> InputPipeline` (mode 'train'), e.g.
      `@labeled/InputPipeline` (not called by gin), built when training first
      reads it; None for a task that only evaluates or labels.
    eval_data: `() -> InputPipeline` (mode 'eval'), optional, e.g.
      `@eval/InputPipeline`, built when first read.
    dataset_name: label space (`datasets.get_dataset_info`).
    model_fn: `fn(num_classes=...) -> keras.Model` returning raw outputs.
    loss_fn: `fn(ignore_label=...) -> loss layer` (PanopticLoss).
    post_processor_fn: `fn(thing_ids=..., label_divisor=..., ignore_label=...)`
      -> `PanopticDeepLabPostProcessor`.
    pseudo_label_records: for a task that trains on pseudo-labels (the
      Student), instead of `train_data`: `fn(panoptic_json=...) -> records`,
      e.g. `@pseudo/find_records` (not called by gin).
    pseudo_label_pipeline: `fn(records=...) -> InputPipeline` (mode 'train')
      reading those records, e.g. `@pseudo/InputPipeline` (not called by gin).
  """

  def __init__(self,
               train_data: Optional[PipelineFactory] = None,
               eval_data: Optional[PipelineFactory] = None,
               dataset_name: str = 'cityscapes',
               model_fn: Callable = presets.build_panoptic_deeplab,
               loss_fn: Callable = panoptic_losses.PanopticLoss,
               post_processor_fn: Callable = post_lib.PanopticDeepLabPostProcessor,
               pseudo_label_records: Optional[Callable] = None,
               pseudo_label_pipeline: Callable = input_pipeline.InputPipeline):
    if train_data is not None and pseudo_label_records is not None:
      raise ValueError('PanopticDeepLabTask: train_data and '
                       'pseudo_label_records are both set; a task trains on '
                       'human labels or on pseudo-labels')
    self._train_data_fn = _check_factory('train_data', train_data)
    self._eval_data_fn = _check_factory('eval_data', eval_data)
    self._train_data = self._eval_data = _UNBUILT
    self.info = datasets.get_dataset_info(dataset_name)
    self._model_fn = model_fn
    self._loss_fn = loss_fn
    self._post_processor_fn = post_processor_fn
    self._pseudo_label_records = pseudo_label_records
    self._pseudo_label_pipeline = pseudo_label_pipeline
    self._summary_batch = None

  @property
  def train_data(self) -> Optional[input_pipeline.InputPipeline]:
    """The training pipeline, built on first read (None: not set)."""
    if self._train_data is _UNBUILT:
      fn = self._train_data_fn
      self._train_data = fn() if fn is not None else None
    return self._train_data

  @property
  def eval_data(self) -> Optional[input_pipeline.InputPipeline]:
    """The evaluation pipeline, built on first read (None: not set)."""
    if self._eval_data is _UNBUILT:
      fn = self._eval_data_fn
      self._eval_data = fn() if fn is not None else None
    return self._eval_data

  @property
  def has_eval_data(self) -> bool:
    """Whether an eval pipeline is set, without building it."""
    return self._eval_data_fn is not None

  @property
  def trains_on_pseudo_labels(self) -> bool:
    return self._pseudo_label_records is not None

  def with_pseudo_labels(self, panoptic_json: str) -> 'PanopticDeepLabTask':
    """A copy of this task whose `train_data` reads the labels of `panoptic_json`.

    The records and the pipeline are made when training first reads them.
    """
    if not self.trains_on_pseudo_labels:
      raise ValueError(
          'this PanopticDeepLabTask has no pseudo_label_records; bind '
          '<scope>/PanopticDeepLabTask.pseudo_label_records for the stage that '
          f'trains on {panoptic_json}')
    task = copy.copy(self)
    records_fn, pipeline_fn = (self._pseudo_label_records,
                               self._pseudo_label_pipeline)
    task._train_data_fn = lambda: pipeline_fn(
        records=records_fn(panoptic_json=panoptic_json))
    task._train_data = _UNBUILT
    task._pseudo_label_records = None
    task._summary_batch = None
    return task

  @property
  def input_shape(self):
    if self._train_data_fn is None:
      return (65, 65, 3)
    return tuple(self.train_data.crop_size) + (3,)

  @property
  def global_batch_size(self) -> int:
    return self.train_data.global_batch_size if self._train_data_fn else 1

  def build_model(self):
    return self._model_fn(num_classes=self.info.num_classes)

  def build_losses(self):
    return self._loss_fn(ignore_label=self.info.ignore_label)

  def build_post_processor(self):
    return self._post_processor_fn(
        thing_ids=self.info.thing_train_ids,
        label_divisor=self.info.label_divisor,
        ignore_label=self.info.ignore_label)

  def train_dataset_fn(self, input_context=None, start_step: int = 0):
    if self.train_data is None:
      raise ValueError(
          'PanopticDeepLabTask trains on pseudo-labels but was given none '
          '(`with_pseudo_labels`)' if self.trains_on_pseudo_labels else
          'PanopticDeepLabTask.train_data is not set')
    return self.train_data.dataset_fn(input_context, start_step=start_step)

  def evaluate(self, model, tta_fn: Optional[Callable] = None,
               results_dir: Optional[str] = None) -> Dict[str, float]:
    """PQ, SQ, RQ, PQ_things, PQ_stuff, mIoU, AP, AP50 (percent) on eval_data.

    With `results_dir`, the predictions are also written there in the formats
    of the official evaluators (`semantic/`, `instance/`, `panoptic/` and
    `panoptic.json`), for `cityscapes_eval` or cityscapesscripts.
    """
    if self.eval_data is None:
      raise ValueError('PanopticDeepLabTask.eval_data is not set')
    infer = inference.make_inference_fn(model, self.build_post_processor(), tta_fn)
    writer = None
    if results_dir:
      writer = cityscapes_results.ResultsWriter(
          *(os.path.join(results_dir, kind) for kind in RESULT_KINDS),
          dataset=self.info)
    return evaluator.evaluate(infer, self.eval_data.dataset_fn(), self.info,
                              num_examples=self.eval_data.num_examples,
                              results_writer=writer)

  def write_image_summaries(self, model, step: int) -> None:
    """Image, semantic prediction, center heatmap and panoptic map of one frame."""
    if not self.has_eval_data:
      return
    if self._summary_batch is None:
      features, _ = next(iter(self.eval_data.dataset_fn().take(1)))
      self._summary_batch = features[common.IMAGE][:1]
    infer = inference.make_inference_fn(model, self.build_post_processor())
    images = self._summary_batch
    predictions = infer(images)
    outputs = model(images, training=False)
    palette = self.info.colormap_array()
    semantic = colorize(predictions[common.PRED_SEMANTIC].numpy(), palette)
    panoptic = predictions[common.PRED_PANOPTIC].numpy()
    rng = np.random.RandomState(0).randint(0, 255, (1 << 16, 3)).astype(np.uint8)
    instance_colors = rng[panoptic % (1 << 16)]
    instance_colors[panoptic % self.info.label_divisor == 0] = semantic[
        panoptic % self.info.label_divisor == 0]
    heatmap = tf.clip_by_value(outputs[common.PRED_CENTER_HEATMAP], 0.0, 1.0)
    tf.summary.image('sample/image', tf.cast(images, tf.uint8), step=step)
    tf.summary.image('sample/semantic', semantic, step=step)
    tf.summary.image('sample/panoptic', instance_colors, step=step)
    tf.summary.image('sample/center_heatmap', heatmap, step=step)
