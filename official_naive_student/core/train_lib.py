"""One training/evaluation run of a task in a model folder (what `train.py` runs).

`run_experiment` is the gin root of `train.py`: experiments bind `experiment_fn`
to `run_stage` (one supervised model) or to the Naive-Student loop, which calls
`run_stage` for each of its training stages.
"""

import inspect
import os
from typing import Callable, Dict, Optional

from absl import logging
import gin

from official_naive_student.core import file_io
from official_naive_student.core import gin_utils
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.dataloaders import validate

MODES = ('train', 'eval', 'train_and_eval')
EVAL_RESULTS = 'eval_results.json'
OPERATIVE_CONFIG = 'operative_config.gin'
OPERATIVE_CONFIG_EVAL = 'operative_config_eval.gin'


def format_metrics(metrics: Dict[str, Optional[float]]) -> str:
  return ' '.join(f'{k}={v:.2f}' if v is not None else f'{k}=n/a'
                  for k, v in metrics.items())


@gin.register
def run_stage(model_dir: str, mode: str = 'train_and_eval', task=gin.REQUIRED,
              trainer_fn: Callable = trainer_lib.Trainer,
              init_checkpoint: Optional[str] = None,
              results_dir: Optional[str] = None,
              validate_inputs: bool = True,
              pseudo_labels: Optional[str] = None) -> Dict[str, object]:
  """Trains and/or evaluates `task` in `model_dir`; resumes after a kill.

  `results_dir` (optional) receives the evaluated predictions in the official
  evaluators' formats (`task.evaluate`), to score with cityscapesscripts.

  With `validate_inputs`, every file the task's pipelines read is checked
  (`dataloaders/validate.py`, cached) before the model is even built, and one
  error lists all bad files; set it False only for data known to be good.

  `pseudo_labels` (a pseudo-label json, given by the Naive-Student loop to its
  Student stage) is what a task with `pseudo_label_records` trains on
  (`task.with_pseudo_labels`).

  Returns:
    {'checkpoint': latest checkpoint path, 'metrics': eval metrics or None}.
  """
  if mode not in MODES:
    raise ValueError(f'--mode {mode!r} is not one of {MODES}')
  if pseudo_labels is not None:
    task = task.with_pseudo_labels(pseudo_labels)
  if validate_inputs:
    training = mode in ('train', 'train_and_eval')
    validate.validate_pipelines([
        getattr(task, 'train_data', None) if training else None,
        getattr(task, 'eval_data', None)])
  os.makedirs(model_dir, exist_ok=True)
  kwargs = {'init_checkpoint': init_checkpoint} if init_checkpoint else {}
  trainer = trainer_fn(task=task, model_dir=model_dir, **kwargs)
  if mode in ('train', 'train_and_eval'):
    trainer.train()
  else:
    trainer.restore()
    if trainer.manager.latest_checkpoint is None and not init_checkpoint:
      # Else the untrained network would be scored as if it were the model.
      raise FileNotFoundError(
          f"--mode {mode!r}: no checkpoint in "
          f"{os.path.join(model_dir, trainer_lib.CHECKPOINT_SUBDIR)} and no "
          'init_checkpoint; nothing to evaluate')
  # An eval-only run keeps the training run's record of its config.
  gin_utils.write_operative_config(
      model_dir, OPERATIVE_CONFIG_EVAL if mode == 'eval' else OPERATIVE_CONFIG)
  metrics = None
  if mode in ('eval', 'train_and_eval') and task.eval_data is not None:
    metrics = task.evaluate(trainer.model, results_dir=results_dir)
    logging.info('eval at step %d: %s', trainer.step, format_metrics(metrics))
    print(f'eval at step {trainer.step}: {format_metrics(metrics)}', flush=True)
    file_io.atomic_write_json(os.path.join(model_dir, EVAL_RESULTS),
                              {'step': trainer.step, **metrics})
  return {'checkpoint': trainer.manager.latest_checkpoint, 'metrics': metrics,
          'step': trainer.step}


@gin.configurable
def run_experiment(model_dir: str, mode: str = 'train_and_eval',
                   experiment_fn: Callable = run_stage):
  """The root of `train.py`: runs the bound experiment in `model_dir`.

  An experiment without a `mode` argument (the Naive-Student chain, which
  trains and evaluates every stage) runs only in 'train_and_eval'.
  """
  if 'mode' in inspect.signature(experiment_fn).parameters:
    return experiment_fn(model_dir=model_dir, mode=mode)
  if mode != 'train_and_eval':
    raise ValueError(f'--mode {mode!r}: this experiment trains and evaluates '
                     'every stage; only train_and_eval runs it')
  return experiment_fn(model_dir=model_dir)
