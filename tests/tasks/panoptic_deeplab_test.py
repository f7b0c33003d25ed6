"""The task builds a data pipeline only when a run reads it.

Export and labeling build a task for its model, post-processor and label
space; they must neither scan nor need the labeled and evaluation splits.
"""

import gin
import pytest

from official_naive_student.core import gin_utils
from official_naive_student.dataloaders import tiny_cityscapes
from official_naive_student.tasks import panoptic_deeplab


def _counting(name, built):
  """A factory that records its calls in `built` and makes a placeholder."""
  def factory():
    built.append(name)
    return name
  return factory


def test_shipped_teacher_task_builds_without_its_splits(tmp_path):
  """The splits do not exist: only reading a pipeline needs (and finds) that."""
  gin_utils.parse_gin(['cityscapes/teacher.gin'], [
      f"CITYSCAPES_ROOT = '{tmp_path / 'missing'}'",
      "build_panoptic_deeplab.preset = 'tiny'"])
  task = gin.get_configurable(panoptic_deeplab.PanopticDeepLabTask)()
  assert task.info.name == 'cityscapes' and task.has_eval_data
  assert task.build_post_processor() is not None
  with pytest.raises(FileNotFoundError):
    task.train_data  # pylint: disable=pointless-statement
  with pytest.raises(FileNotFoundError):
    task.eval_data  # pylint: disable=pointless-statement


def test_pipelines_are_built_once_when_first_read():
  built = []
  task = panoptic_deeplab.PanopticDeepLabTask(
      train_data=_counting('train', built), eval_data=_counting('eval', built))
  task.build_model()
  task.build_post_processor()
  assert built == []
  assert task.train_data == 'train' and task.train_data == 'train'
  assert built == ['train']
  assert task.eval_data == 'eval' and built == ['train', 'eval']


def test_pseudo_label_pipeline_is_built_when_training_reads_it():
  calls = []
  task = panoptic_deeplab.PanopticDeepLabTask(
      pseudo_label_records=lambda panoptic_json: calls.append(panoptic_json)
      or ['record'],
      pseudo_label_pipeline=lambda records: ('pipeline', records))
  student = task.with_pseudo_labels('labels.json')
  assert calls == [] and task.train_data is None
  assert student.train_data == ('pipeline', ['record'])
  assert student.train_data == ('pipeline', ['record'])
  assert calls == ['labels.json'] and task.train_data is None


def test_a_built_pipeline_binding_fails_naming_the_fix(tmp_path):
  """An older gin file's `@x/InputPipeline()` is refused, not silently eager."""
  root = str(tmp_path / 'cityscapes')
  tiny_cityscapes.write_tree(root, height=64, width=128, sequences=False,
                             splits=('train',))
  gin_utils.parse_gin([], [
      'import official_naive_student.tasks.panoptic_deeplab',
      'PanopticDeepLabTask.train_data = @labeled/InputPipeline()',
      'labeled/InputPipeline.records = @labeled/find_records()',
      f"labeled/find_records.cityscapes_root = '{root}'",
      "labeled/find_records.split = 'train-fine'"])
  with pytest.raises(TypeError, match=r'without parentheses \(`PanopticDeepLab'
                     r'Task.train_data = @labeled/InputPipeline`'):
    gin.get_configurable(panoptic_deeplab.PanopticDeepLabTask)()


def test_the_cityscapes_root_is_required():
  """No default path: reading the data without CITYSCAPES_ROOT names it."""
  gin_utils.parse_gin(['cityscapes/teacher.gin'],
                      ["build_panoptic_deeplab.preset = 'tiny'"])
  task = gin.get_configurable(panoptic_deeplab.PanopticDeepLabTask)()
  with pytest.raises(ValueError, match='CITYSCAPES_ROOT'):
    task.train_data  # pylint: disable=pointless-statement


@pytest.mark.parametrize('dataset', ['demo', 'camvid', 'cityscapes'])
def test_every_chain_shares_the_wiring_of_chain_gin(dataset):
  gin_utils.parse_gin([f'{dataset}/naive_student.gin'], [])
  assert gin.query_parameter('run_naive_student.student_stage').scoped_selector == (
      'student/run_stage')
  assert gin.query_parameter(
      'student/PanopticDeepLabTask.train_data') is None
  # chain.gin comes after the Teacher's file, whose experiment is one stage.
  assert gin.query_parameter('run_experiment.experiment_fn').selector.endswith(
      'run_naive_student')
