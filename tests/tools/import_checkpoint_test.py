"""tools/import_checkpoint: a checkpoint DeepLab2 saved gives its outputs here.

The fixture (tests/testdata/deeplab2_tiny, see its README) was written by
DeepLab2's own code; its recorded outputs are the reference, so CI needs no
DeepLab2.
"""

import os
import re

import gin
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import checkpoint_utils
from official_naive_student.core import gin_utils
from official_naive_student.core import inference
from official_naive_student.core import train_lib
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.naive_student import loop
from official_naive_student.serving import export_lib
from official_naive_student.tools import deeplab2_config
from official_naive_student.tools import import_checkpoint
from official_naive_student.tools import imported_stage

FIXTURE = os.path.join(os.path.dirname(__file__), '..', 'testdata',
                       'deeplab2_tiny')
CHECKPOINT = os.path.join(FIXTURE, 'deeplab2_ckpt', 'ckpt')
CONFIG = os.path.join(FIXTURE, 'config.textproto')
_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


@pytest.fixture(scope='module')
def imported(tmp_path_factory):
  """The fixture imported once: (output dir, report)."""
  out = str(tmp_path_factory.mktemp('imported'))
  model, report, settings = import_checkpoint.import_deeplab2(CHECKPOINT,
                                                              CONFIG)
  dataset = import_checkpoint.resolve_dataset(
      settings, None, report.model_options['num_classes'])
  import_checkpoint.write_output(model, report, out, dataset, settings,
                                 CHECKPOINT)
  return out, report


def _task_from_gin(out):
  gin.clear_config()
  gin_utils.parse_gin([os.path.join(out, import_checkpoint.GIN_FILE)], [])
  return export_lib.build_task_from_gin()


def test_imported_model_gives_deeplab2_outputs(imported):
  out, report = imported
  assert len(report.mapped) == 271 and not report.fresh
  assert report.skipped  # global_step and the optimizer's state.
  # What users restore: the written checkpoint through the written gin.
  task = _task_from_gin(out)
  model, _ = inference.load_model(task.build_model, out)
  reference = np.load(os.path.join(FIXTURE, 'deeplab2_outputs.npz'))
  assert model.count_params() == int(reference['num_params'])
  outputs = model(tf.constant(reference['image'], tf.float32), training=False)
  # Measured: 6e-6, 6e-6, 3e-5 (logits up to 5.6, offsets up to 34 px).
  for ours, theirs, atol in (
      (common.PRED_SEMANTIC_LOGITS, 'semantic_logits', 1e-4),
      (common.PRED_OFFSET, 'offset_map', 1e-3)):
    np.testing.assert_allclose(outputs[ours].numpy(), reference[theirs],
                               atol=atol, rtol=0, err_msg=ours)
  np.testing.assert_allclose(
      outputs[common.PRED_CENTER_HEATMAP].numpy()[..., 0],
      reference['center_heatmap'], atol=1e-4, rtol=0)
  # The textproto's post-processing and label space reached the task.
  post = task.build_post_processor().get_config()
  assert (post['nms_kernel'], post['keep_k'], post['stuff_area_limit']) == (
      13, 400, 2048)
  assert post['stuff_area_reference'] is None
  assert task.info.name == 'cityscapes'


def test_pseudo_label_stage_restores_the_import_as_teacher(imported):
  out, _ = imported
  model = _task_from_gin(out).build_model()
  prefix = inference.restore_model(model, out)
  assert prefix == tf.train.latest_checkpoint(out)


def test_imported_stage_hands_the_import_to_the_chain(imported):
  out, _ = imported
  result = imported_stage.imported_stage(model_dir='unused', checkpoint=out)
  assert result['checkpoint'] == tf.train.latest_checkpoint(out)
  assert result['metrics'] is None


def test_trainer_starts_from_the_import_and_trains(imported, tmp_path):
  out, _ = imported
  task = _task_from_gin(out)
  height, width, batch = 33, 65, 2

  class ImportedTask:
    input_shape = (height, width, 3)
    global_batch_size = batch

    def build_model(self):
      return task.build_model()

    def build_losses(self):
      return task.build_losses()

    def train_dataset_fn(self, input_context=None, start_step=0):
      del input_context, start_step
      ones = tf.ones([height, width])
      labels = {
          common.GT_SEMANTIC: tf.zeros([height, width], tf.int32),
          common.GT_SEMANTIC_WEIGHTS: ones,
          common.GT_CENTER_HEATMAP: tf.zeros([height, width, 1]),
          common.GT_CENTER_WEIGHTS: ones,
          common.GT_OFFSET: tf.zeros([height, width, 2]),
          common.GT_OFFSET_WEIGHTS: ones,
      }
      image = {common.IMAGE: tf.fill([height, width, 3], 128.0)}
      return tf.data.Dataset.from_tensors((image, labels)).repeat().batch(
          batch, drop_remainder=True)

    def write_image_summaries(self, model, step):
      del model, step

  trainer = trainer_lib.Trainer(ImportedTask(), str(tmp_path), num_steps=1,
                                checkpoint_every=0, summary_every=1,
                                init_checkpoint=out)
  report = trainer.restore()
  assert not report.missing_in_checkpoint and not report.shape_mismatch
  reader = tf.train.load_checkpoint(CHECKPOINT)
  key = 'semantic_last_layer/kernel' + _SUFFIX
  np.testing.assert_array_equal(
      trainer.model.semantic_head.final_conv.kernel.numpy(),
      reader.get_tensor(key))
  losses = trainer.train()
  assert trainer.step == 1 and np.isfinite(losses[common.LOSS_TOTAL])


def _fixture_values():
  """{object path without suffix: value} of the fixture's network items."""
  reader = tf.train.load_checkpoint(CHECKPOINT)
  values = {}
  for item in import_checkpoint.deeplab2_names.ITEMS:
    for path, key in checkpoint_utils.checkpoint_paths(reader, item).items():
      values[path[:-len(_SUFFIX)]] = reader.get_tensor(key)
  return values


def _write(values, prefix):
  """A checkpoint with these object paths, as DeepLab2's layers would save."""
  root = tf.Module()
  for path, value in values.items():
    node = root
    *parents, leaf = path.split('/')
    for name in parents:
      if not hasattr(node, name):
        setattr(node, name, tf.Module())
      node = getattr(node, name)
    setattr(node, leaf, tf.Variable(value))
  return tf.train.Checkpoint(**{name: getattr(root, name) for name in {
      p.split('/')[0] for p in values}}).write(prefix)


def test_backbone_only_checkpoint_initializes_the_backbone(tmp_path):
  encoder = {k: v for k, v in _fixture_values().items()
             if k.startswith('encoder/')}
  prefix = _write(encoder, str(tmp_path / 'imagenet' / 'ckpt'))
  model, report, _ = import_checkpoint.import_deeplab2(prefix, CONFIG)
  assert len(report.mapped) == len(encoder)
  assert report.fresh and not any(p.startswith('backbone')
                                  for p in report.fresh)
  assert {p.split('/')[0] for p in report.fresh} == {
      'semantic_decoder', 'instance_decoder', 'semantic_head', 'center_head',
      'offset_head'}
  np.testing.assert_array_equal(model.backbone.stem.conv.kernel.numpy(),
                                encoder['encoder/_stem/_conv/kernel'])


@pytest.mark.parametrize('edit, message', [
    # Another architecture: DeepLab2's ResNet-50 has an Inception stem.
    (lambda v: {('encoder/_stem/_conv1_bn_act/_conv/kernel'
                 if k == 'encoder/_stem/_conv/kernel' else k): x
                for k, x in v.items()}, r'not a DeepLab2 Wide-ResNet'),
    (lambda v: {**v, 'encoder/_stage2/_block1/_squeeze_and_excite/_conv/kernel':
                np.zeros([1, 1, 2, 2], np.float32)},
     r'encoder/_stage2/_block1/_squeeze_and_excite/_conv/kernel'),
    (lambda v: {**v, 'semantic_last_layer/kernel': np.zeros(
        [1, 1, 16, 19], np.float32), 'semantic_head_without_last_layer/'
        '_conv1_bn_act/_pointwise/_conv/kernel': np.zeros(
            [1, 1, 16, 12], np.float32)},
     r'shape \(1, 1, 16, 19\) in the checkpoint, \(1, 1, 12, 19\) in ours'),
    (lambda v: {**v, 'aux_head/kernel': np.zeros([2], np.float32)},
     r"items \['aux_head'\]"),
    (lambda v: {k: x for k, x in v.items()
                if not k.startswith('instance_regression_head_last_layer')},
     r'without a DeepLab2 value: .*offset_head/final_conv'),
])
def test_mismatching_checkpoints_fail_naming_the_variable(tmp_path, edit,
                                                          message):
  prefix = _write(edit(_fixture_values()), str(tmp_path / 'ckpt'))
  with pytest.raises(import_checkpoint.CheckpointMismatchError,
                     match=message):
    import_checkpoint.import_deeplab2(prefix, CONFIG)


def test_textproto_settings():
  with open(CONFIG) as f:
    settings = deeplab2_config.read_settings(f.read())
  assert settings['output_stride'] == 16
  assert settings['atrous_rates'] == (6, 12, 18)
  assert settings['low_level_features'] == ('res3', 'res2')
  assert settings['dataset'] == 'cityscapes'
  assert settings['post_processing'] == dict(
      center_score_threshold=0.1, nms_kernel=13, keep_k_centers=400,
      stuff_area_limit=2048)
  with pytest.raises(ValueError, match='mobilenet_v3_large'):
    deeplab2_config.read_settings(
        'model_options { backbone { name: "mobilenet_v3_large" } '
        'panoptic_deeplab { } }')


# --- --format deeplab_tf1: the TF1 DeepLab model zoo's xception_71 ---------

_TF1_WIDTH = 1 / 16
_BN_NAMES = ('gamma', 'beta', 'moving_mean', 'moving_variance')


def _tf1_xception71_shapes(width=_TF1_WIDTH):
  """Every variable of TF1 DeepLab's `xception_71` (research/deeplab/core/
  xception.py) at `width`, written out here independently of our mapping."""
  def c(channels):
    return max(1, int(round(channels * width)))

  shapes = {}

  def conv_bn(scope, kernel, cin, cout):
    shapes[f'{scope}/weights'] = [kernel, kernel, cin, cout]
    for v in _BN_NAMES:
      shapes[f'{scope}/BatchNorm/{v}'] = [cout]

  conv_bn('xception_71/entry_flow/conv1_1', 3, 3, c(32))
  conv_bn('xception_71/entry_flow/conv1_2', 3, c(32), c(64))
  blocks = [(f'entry_flow/block{i + 1}', [d] * 3, 'conv', 1)
            for i, d in enumerate((128, 256, 256, 728, 728))]
  blocks += [('middle_flow/block1', [728] * 3, 'sum', 16),
             ('exit_flow/block1', [728, 1024, 1024], 'conv', 1),
             ('exit_flow/block2', [1536, 1536, 2048], 'none', 1)]
  cin = c(64)
  for block, depths, skip, units in blocks:
    for unit in range(1, units + 1):
      scope = f'xception_71/{block}/unit_{unit}/xception_module'
      unit_in = x = cin
      for k, depth in enumerate(depths, 1):
        sep = f'{scope}/separable_conv{k}'
        shapes[f'{sep}_depthwise/depthwise_weights'] = [3, 3, x, 1]
        for v in _BN_NAMES:
          shapes[f'{sep}_depthwise/BatchNorm/{v}'] = [x]
        conv_bn(f'{sep}_pointwise', 1, x, c(depth))
        x = c(depth)
      if skip == 'conv':
        conv_bn(f'{scope}/shortcut', 1, unit_in, x)
      cin = x
  shapes['xception_71/logits/weights'] = [1, 1, cin, 1001]
  shapes['xception_71/logits/biases'] = [1001]
  return shapes


def _write_tf1(shapes, prefix, seed=0):
  """A name-based TF1 checkpoint, as slim's tf.compat.v1 Saver writes it."""
  rng = np.random.default_rng(seed)
  values = {n: rng.standard_normal(s).astype(np.float32)
            for n, s in shapes.items()}
  values['global_step'] = np.array(123456, np.int64)
  names = sorted(values)
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(values[n]) for n in names])
  return values


@pytest.fixture(scope='module')
def tf1_imported(tmp_path_factory):
  root = tmp_path_factory.mktemp('tf1')
  prefix = str(root / 'xception_71' / 'model.ckpt')
  values = _write_tf1(_tf1_xception71_shapes(), prefix)
  model, report, settings = import_checkpoint.import_deeplab_tf1(prefix)
  return root, prefix, values, model, report, settings


def test_tf1_fixture_has_xception71s_variables():
  shapes = _tf1_xception71_shapes(width=1)
  # 2 stems + 5 entry + 16 middle + 2 exit modules; 6 convs with shortcuts.
  assert len(shapes) == 2 * 5 + 23 * 30 + 6 * 5 + 2
  params = sum(int(np.prod(s)) for n, s in shapes.items()
               if not n.endswith(('moving_mean', 'moving_variance')))
  # Our X-71 at full width has the same trainable parameters.
  backbone = import_checkpoint.presets.build_backbone(
      import_checkpoint.TF1_PRESET)
  backbone(tf.zeros([1, 33, 33, 3]))
  ours = sum(int(np.prod(v.shape)) for v in backbone.trainable_weights)
  assert params - 2048 * 1001 - 1001 == ours


def test_tf1_checkpoint_initializes_the_backbone(tf1_imported):
  _, _, values, model, report, settings = tf1_imported
  assert settings is None
  assert sorted(report.skipped) == ['global_step', 'xception_71/logits/biases',
                                    'xception_71/logits/weights']
  assert len(report.mapped) == len(values) - 3
  assert report.model_options['backbone_kwargs'] == {
      'width_multiplier': _TF1_WIDTH}
  # Every imported variable holds the fixture's array.
  ours = {import_checkpoint._path(model, v): v for v in model.weights}
  for name, path in report.mapped.items():
    np.testing.assert_array_equal(ours[path].numpy(), values[name],
                                  err_msg=name)
  assert len(set(report.mapped.values())) == len(report.mapped)
  backbone_paths = {import_checkpoint._path(model, v)
                    for v in model.backbone.weights}
  assert set(report.mapped.values()) == backbone_paths
  assert {p.split('/')[0] for p in report.fresh} == {
      'semantic_decoder', 'instance_decoder', 'semantic_head', 'center_head',
      'offset_head'}
  # The layer-by-layer correspondence, spelled out.
  b = model.backbone
  m = 'xception_71/middle_flow/block1/unit_16/xception_module'
  e = 'xception_71/entry_flow/block3/unit_1/xception_module'
  for ours_value, name in (
      (b.entry_flow_conv1_2.conv.kernel,
       'xception_71/entry_flow/conv1_2/weights'),
      (b.entry_flow_conv1_1.norm.moving_variance,
       'xception_71/entry_flow/conv1_1/BatchNorm/moving_variance'),
      (b.entry_flow_block3.shortcut.conv.kernel, f'{e}/shortcut/weights'),
      (b.entry_flow_block3.shortcut.norm.beta, f'{e}/shortcut/BatchNorm/beta'),
      (b.middle_flow_unit16.separable_conv2.depthwise.kernel,
       f'{m}/separable_conv2_depthwise/depthwise_weights'),
      (b.middle_flow_unit16.separable_conv2.depthwise_norm.gamma,
       f'{m}/separable_conv2_depthwise/BatchNorm/gamma'),
      (b.middle_flow_unit16.separable_conv3.norm.moving_mean,
       f'{m}/separable_conv3_pointwise/BatchNorm/moving_mean'),
      (b.exit_flow_block2.separable_conv3.conv.kernel,
       'xception_71/exit_flow/block2/unit_1/xception_module/'
       'separable_conv3_pointwise/weights')):
    np.testing.assert_array_equal(ours_value.numpy(), values[name])


def test_tf1_import_writes_a_restorable_model(tf1_imported, tmp_path):
  _, prefix, values, model, report, _ = tf1_imported
  out = str(tmp_path / 'out')
  import_checkpoint.write_output(model, report, out, 'cityscapes', None,
                                 prefix)
  with open(os.path.join(out, import_checkpoint.GIN_FILE)) as f:
    text = f.read()
  assert "build_panoptic_deeplab.preset = 'panoptic_deeplab_x71'" in text
  restored, _ = inference.load_model(_task_from_gin(out).build_model, out)
  np.testing.assert_array_equal(
      restored.backbone.exit_flow_block1.shortcut.conv.kernel.numpy(),
      values['xception_71/exit_flow/block1/unit_1/xception_module/'
             'shortcut/weights'])


_DW = ('xception_71/middle_flow/block1/unit_7/xception_module/'
       'separable_conv1_depthwise/depthwise_weights')


@pytest.mark.parametrize('edit, message', [
    (lambda s: {k: v for k, v in s.items() if k != _DW},
     r'backbone variables without a value: '
     r'\[.*middle_flow_unit7/separable_conv1/depthwise.*lacks \[.*' + _DW),
    (lambda s: {**s, _DW: [3, 3, 47, 1]},
     re.escape(_DW) + r': shape \(3, 3, 47, 1\) in the checkpoint, '
     r'\(3, 3, 46, 1\) in ours'),
    (lambda s: {**s, 'xception_71/entry_flow/block1/unit_1/xception_module/'
                'separable_conv1_depthwise/biases': [8]},
     r'separable_conv1_depthwise/biases: no counterpart'),
])
def test_tf1_mismatching_checkpoints_fail_naming_the_variable(tmp_path, edit,
                                                              message):
  prefix = str(tmp_path / 'model.ckpt')
  _write_tf1(edit(_tf1_xception71_shapes()), prefix)
  with pytest.raises(import_checkpoint.CheckpointMismatchError,
                     match=message):
    import_checkpoint.import_deeplab_tf1(prefix)


def test_chain_starts_from_the_imported_teacher(imported, tmp_path):
  """Iteration 1 of the demo chain with the import as its Teacher."""
  out, _ = imported
  root, model_dir = str(tmp_path / 'data'), str(tmp_path / 'run')
  gin.clear_config()
  gin_utils.parse_gin(
      ['demo/naive_student.gin', os.path.join(out, import_checkpoint.GIN_FILE)],
      ['import official_naive_student.tools.imported_stage',
       f"ensure_synthetic_cityscapes.out_dir = '{root}'",
       'ensure_synthetic_cityscapes.height = 64',
       'ensure_synthetic_cityscapes.width = 128',
       'ensure_synthetic_cityscapes.num_sequences = 3',
       'ensure_synthetic_cityscapes.frames_per_sequence = 2',
       'ensure_synthetic_cityscapes.labeled_frame = 1',
       'ensure_synthetic_cityscapes.extra_images = 1',
       "ensure_synthetic_cityscapes.split_sizes = {'train': 2, 'val': 1}",
       'run_naive_student.num_iterations = 1',
       'run_naive_student.teacher_stage = @imported_stage',
       f"imported_stage.checkpoint = '{out}'",
       'run_naive_student.control_stage = None',
       'labeled/InputPipeline.crop_size = (65, 65)',
       'labeled/InputPipeline.global_batch_size = 2',
       'pseudo/InputPipeline.crop_size = (65, 65)',
       'pseudo/InputPipeline.global_batch_size = 2',
       'pseudo_label.scales = (1.0,)',
       'STUDENT_STEPS = 1',
       'finetune/Trainer.num_steps = 1',
       'Trainer.checkpoint_every = 1',
       'Trainer.image_summary_every = 0'])
  rows = train_lib.run_experiment(model_dir=model_dir)
  assert [(r['iteration'], r['stage']) for r in rows] == [
      (0, 'teacher'), (1, 'pseudo_label'), (1, 'student'), (1, 'finetune')]
  assert rows[0]['checkpoint'] == os.path.relpath(
      tf.train.latest_checkpoint(out), model_dir)
  assert rows[1]['num_frames'] == 2 * 2 + 1  # Video frames + extra image.
  assert 0 <= rows[3]['PQ'] <= 100
  assert os.path.exists(os.path.join(
      loop.stage_dir(model_dir, 1, 'finetune'), 'checkpoints', 'ckpt-1.index'))
