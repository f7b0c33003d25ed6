"""The whole Naive-Student chain through train.py's library path, at toy size.

Checks the wiring that only the chain exercises: what each stage is handed (the
Student the pseudo-label json, as an argument; the pseudo-label stage its
Teacher's checkpoint and network), the summary rows, and that re-running a
finished chain trains and labels nothing.
"""

import json
import os
import shutil

import gin
import keras
import pytest

from official_naive_student.core import gin_utils
from official_naive_student.core import train_lib
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders.synthetic import layout
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import loop
from official_naive_student.naive_student import oracle_labels
from official_naive_student.naive_student import pseudo_labeling
from official_naive_student.tasks import panoptic_deeplab as task_lib


def _parse(root):
  gin_utils.parse_gin(['demo/naive_student.gin'], [
      f"ensure_synthetic_cityscapes.out_dir = '{root}'",
      'ensure_synthetic_cityscapes.height = 64',
      'ensure_synthetic_cityscapes.width = 128',
      'ensure_synthetic_cityscapes.num_sequences = 3',
      'ensure_synthetic_cityscapes.frames_per_sequence = 4',
      'ensure_synthetic_cityscapes.labeled_frame = 2',
      'ensure_synthetic_cityscapes.extra_images = 2',
      "ensure_synthetic_cityscapes.split_sizes = {'train': 2, 'val': 1}",
      'run_naive_student.num_iterations = 1',
      'labeled/InputPipeline.crop_size = (64, 64)',
      'labeled/InputPipeline.global_batch_size = 2',
      'pseudo/InputPipeline.crop_size = (64, 64)',
      'pseudo/InputPipeline.global_batch_size = 2',
      'pseudo_label.scales = (1.0, 1.5)',
      'Trainer.num_steps = 2',
      'student/Trainer.num_steps = 2',
      'finetune/Trainer.num_steps = 2',
      'STUDENT_STEPS = 2',
      'Trainer.checkpoint_every = 2',
      'Trainer.image_summary_every = 0',
  ])


def test_chain_runs_once_and_summarizes(tmp_path, monkeypatch,
                                        check_one_iteration_summary,
                                        check_every_binding_used):
  root, model_dir = str(tmp_path / 'data'), str(tmp_path / 'run')
  built = {}  # model_dir -> (task, init_checkpoint) of each chain Trainer.
  original_init = trainer_lib.Trainer.__init__

  def recording_init(self, task, model_dir, **kwargs):
    built[model_dir] = task, kwargs.get('init_checkpoint')
    original_init(self, task, model_dir, **kwargs)
  monkeypatch.setattr(trainer_lib.Trainer, '__init__', recording_init)

  def stage_inputs(stage):
    """(label formats of the training records, init checkpoint) of a stage."""
    task, init = built[loop.stage_dir(model_dir, 1, stage)]
    return {r.label_format for r in task.train_data._records}, init
  _parse(root)
  rows = train_lib.run_experiment(model_dir=model_dir)

  check_one_iteration_summary(rows, model_dir, control=True)
  check_every_binding_used()  # demo/naive_student.gin, teacher.gin, tiny.gin.
  labels_row = rows[1]  # Rated against the hidden ground truth of every frame.
  assert 0 <= labels_row['mIoU'] <= 100 and 0 <= labels_row['PQ'] <= 100
  assert labels_row['num_frames'] == 2 * 4 + 2  # Video frames + extra images.
  # The student trained on the pseudo-labels, the fine-tuning from the student.
  labels_dir = loop.stage_dir(model_dir, 1, 'pseudo_label')
  student_task, _ = built[loop.stage_dir(model_dir, 1, 'student')]
  assert all(r.label_path.startswith(labels_dir)
             for r in student_task.train_data._records)
  student_result = os.path.join(loop.stage_dir(model_dir, 1, 'student'),
                                loop.STAGE_RESULT)
  assert json.load(open(student_result))['pseudo_labels'] == os.path.relpath(
      label_folder.panoptic_json_path(labels_dir),
      os.path.dirname(student_result))
  # The control: the Student's start and steps on the human labels, then the
  # same fine-tuning as the Student's.
  teacher = os.path.join(model_dir, rows[0]['checkpoint'])
  assert stage_inputs('student') == ({cf.LABEL_PANOPTIC}, teacher)
  human_labels, init = stage_inputs('control_student')
  assert cf.LABEL_PANOPTIC not in human_labels and init == teacher
  assert stage_inputs('control') == (human_labels, os.path.join(
      loop.stage_dir(model_dir, 1, 'control_student'), 'checkpoints',
      'ckpt-2'))

  # A second run of the finished chain trains and labels nothing.
  def fail(*args, **kwargs):
    raise AssertionError('a finished stage ran again')
  write_pseudo_labels = pseudo_labeling.write_pseudo_labels
  monkeypatch.setattr(trainer_lib.Trainer, 'train', fail)
  monkeypatch.setattr(pseudo_labeling, 'write_pseudo_labels', fail)
  _parse(root)
  assert train_lib.run_experiment(model_dir=model_dir) == rows

  # A moved chain folder is still a finished chain, with its own checkpoints.
  moved = str(tmp_path / 'moved')
  os.rename(model_dir, moved)
  _parse(root)
  assert train_lib.run_experiment(model_dir=moved) == rows
  for name in os.listdir(moved):
    result = os.path.join(moved, name, loop.STAGE_RESULT)
    if os.path.exists(result):
      assert str(tmp_path / 'run') not in open(result).read(), result

  # The chain resumed after its Teacher stage, in a process whose dtype policy
  # a bf16 Trainer would have left behind, labels exactly as the uninterrupted
  # chain did: the finished Student, which fingerprints its json, is reused.
  shutil.rmtree(loop.stage_dir(moved, 1, 'pseudo_label'))
  monkeypatch.setattr(pseudo_labeling, 'write_pseudo_labels',
                      write_pseudo_labels)
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    _parse(root)
    assert train_lib.run_experiment(model_dir=moved) == rows
  finally:
    keras.mixed_precision.set_global_policy('float32')

  # Labels rewritten since the Student trained on them: the finished Student
  # is not reused as if nothing had changed.
  labels = label_folder.panoptic_json_path(
      loop.stage_dir(moved, 1, 'pseudo_label'))
  with open(labels, 'a') as f:
    f.write(' ')
  _parse(root)
  with pytest.raises(loop.StageInputsChangedError,
                     match=r'iter1_student is finished .*\(pseudo_labels '):
    train_lib.run_experiment(model_dir=moved)


def _fake_training_stage(calls, name):
  """A training stage that records its arguments and writes a checkpoint file."""
  def stage(model_dir, init_checkpoint=None, **kwargs):
    calls.append((name, model_dir, init_checkpoint, kwargs))
    checkpoint = os.path.join(model_dir, 'ckpt')
    with open(checkpoint, 'w') as f:
      f.write(model_dir)
    return {'checkpoint': checkpoint, 'metrics': {'PQ': 1.0, 'mIoU': 2.0}}
  return stage


def test_the_loop_hands_values_to_its_stages(tmp_path):
  """Each Teacher is its checkpoint plus its network; each Student its json."""
  calls = []

  def pseudo_label_stage_fn(teacher_checkpoint, teacher_model_fn, output_dir):
    calls.append(('pseudo_label', output_dir, teacher_checkpoint,
                  {'teacher_model_fn': teacher_model_fn}))
    json_path = os.path.join(output_dir, 'labels.json')
    with open(json_path, 'w') as f:
      f.write(teacher_checkpoint)
    return {'json': json_path, 'quality': None}

  def teacher_net(num_classes):
    del num_classes

  def student_net(num_classes):
    del num_classes

  model_dir = str(tmp_path)
  config_before = gin.config_str()
  loop.run_naive_student(
      model_dir, num_iterations=2,
      teacher_stage=_fake_training_stage(calls, 'teacher'),
      pseudo_label_stage=pseudo_label_stage_fn,
      student_stage=_fake_training_stage(calls, 'student'),
      finetune_stage=_fake_training_stage(calls, 'finetune'),
      teacher_model_fn=teacher_net, student_model_fn=student_net)
  assert gin.config_str() == config_before  # No binding was written.
  by_dir = {os.path.basename(d): (name, init, kwargs)
            for name, d, init, kwargs in calls}
  teacher = os.path.join(model_dir, 'iter0_teacher', 'ckpt')
  finetuned = os.path.join(model_dir, 'iter1_finetune', 'ckpt')
  assert by_dir['iter1_pseudo_label'] == ('pseudo_label', teacher,
                                          {'teacher_model_fn': teacher_net})
  assert by_dir['iter2_pseudo_label'] == ('pseudo_label', finetuned,
                                          {'teacher_model_fn': student_net})
  for iteration in (1, 2):
    labels = os.path.join(loop.stage_dir(model_dir, iteration, 'pseudo_label'),
                          'labels.json')
    assert by_dir[f'iter{iteration}_student'][2] == {'pseudo_labels': labels}
    assert by_dir[f'iter{iteration}_finetune'][2] == {}


def test_a_binding_of_the_removed_pseudo_label_binding_fails_loudly(tmp_path):
  with pytest.raises(ValueError, match='pseudo_label_binding'):
    gin_utils.parse_gin(['demo/naive_student.gin'], [
        "run_naive_student.pseudo_label_binding = "
        "'pseudo/find_records.panoptic_json'"])


class _RecordingTrainer:
  """Stands in for `Trainer`: keeps the task it was given, trains nothing."""
  last_task = None

  def __init__(self, task, model_dir, **kwargs):
    del model_dir, kwargs
    _RecordingTrainer.last_task = task
    self.step = 0
    self.manager = type('Manager', (), {'latest_checkpoint': None})()

  def train(self):
    pass


def test_the_student_stage_trains_on_the_records_of_its_argument(tmp_path):
  """The demo's Student: the records of the json run_stage is given, in the
  order `find_records(panoptic_json=...)` gives them (the old data order)."""
  root = str(tmp_path / 'data')
  _parse(root)
  root = gin.get_configurable('ensure_synthetic_cityscapes')()
  split = 'train-sequence+train-extra'
  labels_dir = str(tmp_path / 'labels')
  oracle_labels.oracle_labels(
      None, labels_dir, records=cf.find_records(root, split),
      hidden_gt_root=layout.hidden_gt_root(root))
  json_path = label_folder.panoptic_json_path(labels_dir)
  with gin.config_scope('student'):
    task = gin.get_configurable(task_lib.PanopticDeepLabTask)()
  assert task.train_data is None and task.trains_on_pseudo_labels
  train_lib.run_stage(str(tmp_path / 'student'), mode='train', task=task,
                      trainer_fn=_RecordingTrainer, validate_inputs=False,
                      pseudo_labels=json_path)
  pipeline = _RecordingTrainer.last_task.train_data
  assert pipeline._records == cf.find_records(root, split,
                                              panoptic_json=json_path)
  assert (tuple(pipeline.crop_size), pipeline.global_batch_size) == ((64, 64), 2)
  with pytest.raises(ValueError, match='pseudo-labels but was given none'):
    task.train_dataset_fn()


def test_the_chain_runs_only_in_train_and_eval(tmp_path):
  _parse(str(tmp_path / 'data'))
  with pytest.raises(ValueError, match="--mode 'eval'"):
    train_lib.run_experiment(model_dir=str(tmp_path / 'run'), mode='eval')
  assert not os.path.exists(tmp_path / 'run')


def test_a_binding_that_nothing_reads_is_named(check_every_binding_used):
  gin_utils.parse_gin([], ['import official_naive_student.naive_student.loop',
                           'run_naive_student.num_iterations = 3'])
  with pytest.raises(AssertionError, match='run_naive_student.num_iterations'):
    check_every_binding_used()


def test_a_finished_control_is_adopted_as_the_next_chains_teacher(tmp_path):
  """A longer-trained Teacher: chain B starts from chain A's control."""
  calls = []

  def labels_stage(teacher_checkpoint, teacher_model_fn, output_dir):
    del teacher_model_fn
    calls.append(teacher_checkpoint)
    json_path = os.path.join(output_dir, 'labels.json')
    with open(json_path, 'w') as f:
      f.write(teacher_checkpoint)
    return {'json': json_path, 'quality': None}

  def control_finetune(model_dir, init_checkpoint=None):
    del init_checkpoint
    os.makedirs(os.path.join(model_dir, 'checkpoints'))
    checkpoint = os.path.join(model_dir, 'checkpoints', 'ckpt-300')
    with open(checkpoint, 'w') as f:
      f.write('the control')
    return {'checkpoint': checkpoint, 'metrics': {'PQ': 7.0, 'mIoU': 8.0}}

  def fail(**kwargs):
    raise AssertionError(f'the adopted Teacher was trained again: {kwargs}')

  def chain(model_dir, teacher_stage, finetune_stage=None):
    return loop.run_naive_student(
        model_dir, num_iterations=1, teacher_stage=teacher_stage,
        pseudo_label_stage=labels_stage,
        student_stage=_fake_training_stage([], 'student'),
        finetune_stage=finetune_stage or _fake_training_stage([], 'finetune'),
        control_stage=_fake_training_stage([], 'control'))

  first, second = str(tmp_path / 'a'), str(tmp_path / 'b')
  chain(first, _fake_training_stage([], 'teacher'))
  shutil.rmtree(loop.stage_dir(first, 1, 'control'))
  chain(first, None, control_finetune)  # Only the control's fine-tuning reruns.
  control = loop.stage_dir(first, 1, 'control')

  # Linked as it is, the control is refused: it was made from another init.
  linked = str(tmp_path / 'linked')
  os.makedirs(linked)
  os.symlink(control, loop.stage_dir(linked, 0, 'teacher'))
  with pytest.raises(loop.StageInputsChangedError, match='init'):
    chain(linked, fail)

  teacher = loop.adopt_teacher(control, second)
  rows = chain(second, fail)
  assert rows[0]['stage'] == 'teacher'
  assert (rows[0]['PQ'], rows[0]['mIoU']) == (7.0, 8.0)
  assert rows[0]['checkpoint'] == os.path.join('iter0_teacher', 'checkpoints',
                                               'ckpt-300')
  with open(calls[-1]) as f:  # The labels came from the control's weights.
    assert f.read() == 'the control'
  adopted = json.load(open(os.path.join(teacher, loop.ADOPTED_FROM)))
  assert not os.path.isabs(adopted['source'])
  assert (os.path.realpath(os.path.join(teacher, adopted['source']))
          == os.path.realpath(control))
  assert set(adopted['input_fingerprints']) == {'init'}
  link = os.readlink(os.path.join(teacher, 'checkpoints'))
  assert not os.path.isabs(link)

  # Both chains moved together: the adopted Teacher still resolves and counts
  # as the same source.
  moved = str(tmp_path / 'moved')
  shutil.copytree(first, os.path.join(moved, 'a'), symlinks=True)
  shutil.copytree(second, os.path.join(moved, 'b'), symlinks=True)
  moved_teacher = loop.stage_dir(os.path.join(moved, 'b'), 0, 'teacher')
  with open(os.path.join(moved_teacher, 'checkpoints', 'ckpt-300')) as f:
    assert f.read() == 'the control'
  assert loop.adopt_teacher(loop.stage_dir(os.path.join(moved, 'a'), 1,
                                           'control'),
                            os.path.join(moved, 'b')) == moved_teacher
  assert chain(os.path.join(moved, 'b'), fail)[0]['PQ'] == 7.0
  # A record written with an absolute source (older runs) still matches it.
  record = os.path.join(moved_teacher, loop.ADOPTED_FROM)
  with open(record, 'w') as f:
    json.dump({**adopted, 'source': os.path.realpath(control)}, f)
  assert loop.adopt_teacher(control, os.path.join(moved, 'b')) == moved_teacher

  assert loop.adopt_teacher(control, second) == teacher  # Again: a no-op.
  with pytest.raises(loop.StageInputsChangedError, match='already holds'):
    loop.adopt_teacher(loop.stage_dir(first, 1, 'finetune'), second)
  with pytest.raises(loop.StageInputsChangedError, match='trained by this'):
    loop.adopt_teacher(control, first)
  os.remove(os.path.join(loop.stage_dir(first, 1, 'student'), 'DONE'))
  with pytest.raises(FileNotFoundError, match='not a finished stage'):
    loop.adopt_teacher(loop.stage_dir(first, 1, 'student'), str(tmp_path / 'c'))
  assert not os.path.exists(tmp_path / 'c' / 'iter0_teacher')
