"""The Naive-Student loop: teacher -> pseudo-labels -> student -> fine-tune, repeated.

Each stage writes into its own folder under the experiment folder and marks it
DONE last, so re-running the same command skips finished stages and resumes an
unfinished one (training stages resume from their checkpoints, pseudo-labeling
from the frames already written). The loop closes through files: the pseudo-label
stage writes Cityscapes panoptic PNGs + json, and the student reads them with the
same input pipeline as human labels. Everything a stage gets from an earlier one
is an argument: the Teacher's checkpoint and the network it was trained as go to
the pseudo-label stage, the pseudo-label json to the Student stage.

`DIR/summary.json` holds one row per stage, as the paper's Table 1.
"""

import hashlib
import os
import shutil
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging
import gin

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import inference
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import label_settings
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import pseudo_labeling

SUMMARY_FILE = 'summary.json'
STAGE_RESULT = 'stage_result.json'
STAGES = ('teacher', 'pseudo_label', 'student', 'finetune', 'control')
STUDENT_INITS = ('scratch', 'teacher', 'previous_student')


def stage_dir(model_dir: str, iteration: int, stage: str) -> str:
  return os.path.join(model_dir, f'iter{iteration}_{stage}')


def _relative(path: Optional[str], model_dir: str) -> Optional[str]:
  return None if path is None else os.path.relpath(path, model_dir)


# Result entries that are paths; stage_result.json holds them relative to the
# stage folder, so a chain folder that was moved can still be extended.
_PATH_KEYS = ('checkpoint', 'json', 'pseudo_labels')
_RELATIVE = 'relative_paths'
_INPUTS = 'input_fingerprints'


def _paths_relative(result: Dict, directory: str) -> Dict:
  out = {k: (os.path.relpath(v, directory)
             if k in _PATH_KEYS and isinstance(v, str) else v)
         for k, v in result.items()}
  return {**out, _RELATIVE: True}


def _paths_resolved(stored: Dict, directory: str) -> Dict:
  """Inverse of `_paths_relative`; older files kept the paths as written."""
  if not stored.pop(_RELATIVE, False):
    return stored
  return {k: (os.path.normpath(os.path.join(directory, v))
              if k in _PATH_KEYS and isinstance(v, str) else v)
          for k, v in stored.items()}


class StageInputsChangedError(RuntimeError):
  """A finished stage was made from other inputs than the chain gives it now."""


def _fingerprints(inputs: Dict[str, Optional[str]]) -> Dict[str, Optional[str]]:
  """sha256 of each input: a checkpoint's index, or a file's bytes."""
  out = {}
  for name, path in sorted(inputs.items()):
    if path is None:
      out[name] = None
    elif os.path.isfile(path):
      with open(path, 'rb') as f:
        out[name] = hashlib.sha256(f.read()).hexdigest()
    else:
      out[name] = label_settings.teacher_fingerprint(
          inference.resolve_checkpoint(path))
  return out


def _run_once(directory: str, fn: Callable[[], Dict],
              inputs: Optional[Dict[str, Optional[str]]] = None) -> Dict:
  """Runs `fn` unless `directory` is DONE; returns (and stores) its result.

  `inputs` (name -> checkpoint or file the stage starts from) are stored as
  fingerprints: a finished stage whose inputs have changed since (a Teacher
  retrained, labels rewritten) is an error, not silently reused.
  """
  result_path = os.path.join(directory, STAGE_RESULT)
  fingerprints = _fingerprints(inputs or {})
  if file_io.is_done(directory) and os.path.exists(result_path):
    stored = file_io.read_json(result_path)
    before = stored.pop(_INPUTS, None)
    if before is not None and before != fingerprints:
      changed = sorted(k for k in set(before) | set(fingerprints)
                       if before.get(k) != fingerprints.get(k))
      raise StageInputsChangedError(
          f'{directory} is finished but was made from other inputs '
          f'({", ".join(changed)} changed since); delete that folder (and the '
          'stages after it) to redo it with the current ones')
    logging.info('%s is done; skipping', directory)
    return _paths_resolved(stored, directory)
  os.makedirs(directory, exist_ok=True)
  result = fn()
  file_io.atomic_write_json(result_path, {
      **_paths_relative(result, directory), _INPUTS: fingerprints})
  file_io.mark_done(directory)
  return result


ADOPTED_FROM = 'adopted_from.json'


def adopt_teacher(source_stage: str, model_dir: str) -> str:
  """Makes a finished stage of another chain this chain's iteration-0 Teacher.

  For a Teacher trained longer than a teacher stage trains, e.g. another
  chain's fine-tuned control. The stage folder links the source's checkpoints
  and holds its result under the teacher stage's inputs (none), so the chain
  runs on from it; `adopted_from.json` records the source and its fingerprints.
  Links and record hold paths relative to the stage folder, so a tree moved
  whole (both chains) keeps working. Adopting the same source again is a
  no-op; another one is an error. Returns the stage folder.
  """
  source = os.path.realpath(source_stage)
  target = stage_dir(model_dir, 0, 'teacher')
  home = os.path.join(os.path.realpath(model_dir), os.path.basename(target))
  record = os.path.join(target, ADOPTED_FROM)
  if os.path.lexists(target):
    adopted = None
    if os.path.exists(record):  # An absolute record (older runs) joins as is.
      adopted = os.path.realpath(
          os.path.join(home, file_io.read_json(record)['source']))
    if adopted != source:
      raise StageInputsChangedError(
          f'{target} already holds a Teacher '
          f'({adopted or "trained by this chain"}), not {source}')
    return target
  result_path = os.path.join(source, STAGE_RESULT)
  if not (file_io.is_done(source) and os.path.exists(result_path)):
    raise FileNotFoundError(f'{source_stage} is not a finished stage')
  result = file_io.read_json(result_path)
  provenance = {'source': os.path.relpath(source, home),
                _INPUTS: result.pop(_INPUTS, None)}
  os.makedirs(model_dir, exist_ok=True)
  with file_io.atomic_dir(target) as tmp:
    for name in os.listdir(source):
      path = os.path.join(source, name)
      if os.path.isdir(path):
        file_io.relative_symlink(path, os.path.join(tmp, name), home)
      elif name not in (STAGE_RESULT, file_io.DONE_MARKER):
        shutil.copy(path, tmp)
    file_io.atomic_write_json(os.path.join(tmp, ADOPTED_FROM), provenance)
    file_io.atomic_write_json(os.path.join(tmp, STAGE_RESULT),
                              {**result, _INPUTS: {}})
    file_io.mark_done(tmp)
  return target


def format_table(rows: List[Dict]) -> str:
  """The summary as a text table (one line per stage)."""
  header = f'{"iter":>4} {"stage":<12} {"network":<24} {"PQ":>6} {"AP":>6} {"mIoU":>6}  checkpoint'
  lines = [header, '-' * len(header)]
  fmt = lambda v: f'{v:6.2f}' if isinstance(v, (int, float)) else f'{"-":>6}'
  for r in rows:
    lines.append(f'{r["iteration"]:>4} {r["stage"]:<12} {r["network"]:<24} '
                 f'{fmt(r["PQ"])} {fmt(r["AP"])} {fmt(r["mIoU"])}  '
                 f'{r["checkpoint"] or "-"}')
  return '\n'.join(lines)


def _run_control(model_dir: str, control_stage: Callable,
                 finetune_stage: Callable, init: Optional[str]) -> Dict:
  """The Student's two trainings, from the Student's start, on human labels."""
  directory = stage_dir(model_dir, 1, 'control_student')
  trained = _run_once(directory, lambda: control_stage(
      model_dir=directory, init_checkpoint=init), {'init': init})
  directory = stage_dir(model_dir, 1, 'control')
  return _run_once(directory, lambda: finetune_stage(
      model_dir=directory, init_checkpoint=trained['checkpoint']),
                   {'init': trained['checkpoint']})


@gin.register
def label_and_measure(teacher_checkpoint: str, output_dir: str,
                      teacher_model_fn: Optional[Callable] = None,
                      label_fn: Optional[Callable] = None,
                      hidden_gt_root: Optional[str] = None,
                      hidden_gt_split: Optional[str] = None,
                      truth_records: Optional[Sequence] = None,
                      dataset_name: str = 'cityscapes') -> Dict:
  """The loop's pseudo-label stage: labels every frame, then rates the labels.

  Args:
    teacher_checkpoint: the Teacher's checkpoint (prefix or folder).
    output_dir: the pseudo-label folder.
    teacher_model_fn: the network the Teacher was trained as
      (`fn(num_classes=...)`; None: the task's).
    label_fn: `fn(teacher_checkpoint, output_dir, teacher_model_fn=...) ->
      output_dir or None`; default: `pseudo_label` with its records, scales
      and flip bound by gin.
    hidden_gt_root: ground truth of every frame (the synthetic generator's
      `hidden_gt/`), to report the labels' PQ/mIoU.
    hidden_gt_split: its gtFine split folder (None: search all).
    truth_records: or records carrying the human labels the Teacher was not
      given (CamVid's dropped 3 of 4), to rate the labels against.
    dataset_name: label space of the labels ('cityscapes' also serves the
      synthetic video; 'camvid').

  Returns:
    {'json': the merged panoptic json, 'quality': metrics, or None without a
    ground truth}.
  """
  label_fn = label_fn or gin.get_configurable(pseudo_labeling.pseudo_label)
  if label_fn(teacher_checkpoint, output_dir,
              teacher_model_fn=teacher_model_fn) is None:
    raise RuntimeError(f'{output_dir}: other shards are still labeling; run '
                       'them to completion (or merge) before the student')
  dataset = datasets.get_dataset_info(dataset_name)
  json_path = label_folder.panoptic_json_path(output_dir)
  quality = None
  if hidden_gt_root:
    quality = label_quality.measure_pseudo_label_quality(
        json_path, hidden_gt_root, hidden_gt_split, dataset)
  elif truth_records:
    quality = label_quality.measure_against_records(json_path, truth_records,
                                                    dataset)
  return {'json': json_path, 'quality': quality}


@gin.register
def run_naive_student(model_dir: str,
                      num_iterations: int = 2,
                      teacher_stage: Callable = gin.REQUIRED,
                      pseudo_label_stage: Callable = gin.REQUIRED,
                      student_stage: Callable = gin.REQUIRED,
                      finetune_stage: Callable = gin.REQUIRED,
                      teacher_network: str = 'teacher',
                      student_network: str = 'student',
                      student_init: str = 'scratch',
                      teacher_model_fn: Optional[Callable] = None,
                      student_model_fn: Optional[Callable] = None,
                      control_stage: Optional[Callable] = None
                      ) -> List[Dict]:
  """Runs the whole chain in `model_dir`; returns the summary rows.

  Args:
    model_dir: experiment folder; stages go to `iter<i>_<stage>/`.
    num_iterations: Naive-Student iterations after the iteration-0 teacher.
    teacher_stage: `fn(model_dir, init_checkpoint=None) -> {'checkpoint',
      'metrics'}`, e.g. `@teacher/run_stage`: supervised training on human labels.
    pseudo_label_stage: `fn(teacher_checkpoint, output_dir, teacher_model_fn)
      -> {'json', 'quality'}` (e.g. `@label_and_measure`): labels every
      unlabeled frame with the teacher.
    student_stage: like teacher_stage, training on pseudo-labels only: it is
      also given `pseudo_labels=<the pseudo-label json>` (`run_stage`).
    finetune_stage: like teacher_stage, on human labels, from the student.
    teacher_network: name of the teacher network for the summary.
    student_network: name of the student network for the summary.
    student_init: 'scratch', 'teacher' (its checkpoint) or 'previous_student'.
    teacher_model_fn: the network teacher_stage trains, `fn(num_classes=...)`
      (e.g. `@teacher/build_panoptic_deeplab`): the Teacher of iteration 1 is
      built with it to label. None: the pseudo-label stage's own default.
    student_model_fn: the network finetune_stage trains (e.g.
      `@finetune/build_panoptic_deeplab`), the Teacher of later iterations.
    control_stage: optional, like student_stage but on the human labels
      (e.g. `@control/run_stage` with the student's steps and schedule): the
      supervised control of iteration 1. It starts where the Student starts,
      trains as long, and is fine-tuned by `finetune_stage` as the Student is,
      so only the labels differ; its summary row (stage 'control') says
      whether the pseudo-labels paid for their compute.
  """
  if student_init not in STUDENT_INITS:
    raise ValueError(f'student_init {student_init!r} not in {STUDENT_INITS}')
  os.makedirs(model_dir, exist_ok=True)
  rows = []

  def add_row(iteration, stage, network, result):
    metrics = result.get('metrics') or {}
    checkpoint = result.get('checkpoint')
    rows.append({
        'iteration': iteration, 'stage': stage, 'network': network,
        'PQ': metrics.get('PQ'), 'AP': metrics.get('AP'),
        'mIoU': metrics.get('mIoU'),
        'checkpoint': _relative(checkpoint, model_dir) if checkpoint else None,
        **{k: v for k, v in metrics.items() if k not in ('PQ', 'AP', 'mIoU')},
    })
    file_io.atomic_write_json(os.path.join(model_dir, SUMMARY_FILE), rows)

  directory = stage_dir(model_dir, 0, 'teacher')
  teacher = _run_once(directory, lambda: teacher_stage(model_dir=directory))
  add_row(0, 'teacher', teacher_network, teacher)
  previous_student = None
  for iteration in range(1, num_iterations + 1):
    labels_dir = stage_dir(model_dir, iteration, 'pseudo_label')
    # The Teacher is its checkpoint and the network of the stage that trained it.
    teacher_model = teacher_model_fn if iteration == 1 else student_model_fn
    labels = _run_once(labels_dir, lambda: pseudo_label_stage(
        teacher_checkpoint=teacher['checkpoint'],
        teacher_model_fn=teacher_model, output_dir=labels_dir),
                       {'teacher': teacher['checkpoint']})
    add_row(iteration, 'pseudo_label',
            teacher_network if iteration == 1 else student_network,
            {'metrics': labels.get('quality'), 'checkpoint': None})

    init = {'scratch': None, 'teacher': teacher['checkpoint'],
            'previous_student': previous_student}[student_init]
    directory = stage_dir(model_dir, iteration, 'student')
    student = _run_once(directory, lambda: {**student_stage(
        model_dir=directory, init_checkpoint=init,
        pseudo_labels=labels['json']), 'pseudo_labels': labels['json']},
                        {'pseudo_labels': labels['json'], 'init': init})
    add_row(iteration, 'student', student_network, student)
    previous_student = student['checkpoint']

    directory = stage_dir(model_dir, iteration, 'finetune')
    finetuned = _run_once(directory, lambda: finetune_stage(
        model_dir=directory, init_checkpoint=student['checkpoint']),
                          {'init': student['checkpoint']})
    add_row(iteration, 'finetune', student_network, finetuned)
    if control_stage is not None and iteration == 1:
      add_row(iteration, 'control', student_network,
              _run_control(model_dir, control_stage, finetune_stage,
                           init))
    teacher = finetuned  # The fine-tuned student teaches the next iteration.
  print(format_table(rows), flush=True)
  return rows
