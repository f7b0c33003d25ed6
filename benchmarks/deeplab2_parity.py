"""Does an imported DeepLab2 checkpoint give DeepLab2's outputs on one image?

Two environments take part, exchanging files only: DeepLab2's own code (on
TF 2.21 with `tf_keras`, protos generated) builds its Panoptic-DeepLab from a
textproto with seeded random weights and non-trivial batch-norm statistics,
saves it as its trainer does (`global_step`, `optimizer` with Adam slots and the
model's `checkpoint_items`) and records its outputs on a fixed image. This
project then imports that checkpoint with `tools/import_checkpoint.py`, runs
the imported model on the same image and compares:

  the largest absolute differences of semantic logits, center heatmap and
  offsets, and the share of pixels whose semantic argmax and panoptic id agree
  (both sides' outputs go through this project's post-processor with the
  textproto's settings, so only the networks are compared; DeepLab2's own
  post-processing is not run here).

  python benchmarks/deeplab2_parity.py --deeplab2_src /path/to/deeplab2 \
      --deeplab2_python /path/to/dl2venv/bin/python --out runs/deeplab2_parity

`--deeplab2_src` is a DeepLab2 checkout whose `*_pb2.py` were generated
(`python -m grpc_tools.protoc -I.. --python_out=.. ../deeplab2/*.proto` from
its parent); `--deeplab2_python` an interpreter with TensorFlow, `tf_keras`,
`immutabledict` and `PyYAML` (not this project's requirements). `--size tiny`
makes the narrow network of the committed test fixture
(`tests/testdata/deeplab2_tiny/`, written with `--out` there and
`--fixture`).
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import flags

_DEEPLAB2_SRC = flags.DEFINE_string(
    'deeplab2_src', None, 'DeepLab2 source folder (named deeplab2, protos '
    'generated).')
_DEEPLAB2_PYTHON = flags.DEFINE_string(
    'deeplab2_python', sys.executable, 'Python that runs DeepLab2 (tf_keras).')
_OUT = flags.DEFINE_string('out', 'runs/deeplab2_parity', 'Output folder.')
_SIZE = flags.DEFINE_enum('size', 'full', ['full', 'tiny'],
                          'full: the Cityscapes WR-41 at 1025x2049; tiny: a '
                          'narrow WR-41 at 65x129 (the test fixture).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of weights and image.')
_STAGE = flags.DEFINE_enum('stage', 'all', ['all', 'deeplab2', 'ours'],
                           'deeplab2: only DeepLab2\'s side (run in its '
                           'interpreter); ours: only the comparison.')
_FIXTURE = flags.DEFINE_bool(
    'fixture', False, 'Save the optimizer without Adam slots (small files).')

CONFIG = 'configs/cityscapes/panoptic_deeplab/wide_resnet41_os16.textproto'
SIZES = {'full': (1025, 2049), 'tiny': (65, 129)}
CHECKPOINT = 'deeplab2_ckpt/ckpt'
OUTPUTS = 'deeplab2_outputs.npz'
TEXTPROTO = 'config.textproto'

# The narrow network: 1/16 width, one block in stages 2..5 (DeepLab2's layer
# multiplier keeps 3 blocks in stage 1), 16/8-channel decoders and heads.
TINY_TEXTPROTO_EDITS = {
    'backbone': dict(backbone_width_multiplier=0.0625,
                     stem_width_multiplier=0.0625,
                     backbone_layer_multiplier=0.34),
    'decoder': dict(decoder_channels=16, aspp_channels=16),
    'instance_decoder_override': dict(decoder_channels=8, aspp_channels=8),
    'low_level_channels': (8, 8),
    'instance_low_level_channels': (8, 4),
    'semantic_head_channels': 16,
    'instance_head_channels': 8,
}


def _build_deeplab2(src: str, size: str, height: int, width: int):
  """DeepLab2's model and config from its textproto (tiny edits applied)."""
  os.environ['TF_USE_LEGACY_KERAS'] = '1'
  sys.path.insert(0, os.path.dirname(os.path.abspath(src)))
  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format
  from deeplab2 import config_pb2
  from deeplab2.data import dataset
  from deeplab2.model import deeplab
  # pylint: enable=g-import-not-at-top
  config = config_pb2.ExperimentOptions()
  with open(os.path.join(src, CONFIG)) as f:
    text_format.Parse(f.read(), config)
  if size == 'tiny':
    edits = TINY_TEXTPROTO_EDITS
    model = config.model_options
    for key, value in edits['backbone'].items():
      setattr(model.backbone, key, value)
    for key, value in edits['decoder'].items():
      setattr(model.decoder, key, value)
    override = model.panoptic_deeplab.instance.instance_decoder_override
    for key, value in edits['instance_decoder_override'].items():
      setattr(override, key, value)
    for item, channels in zip(model.panoptic_deeplab.low_level,
                              edits['low_level_channels']):
      item.channels_project = channels
    for item, channels in zip(
        model.panoptic_deeplab.instance.low_level_override,
        edits['instance_low_level_channels']):
      item.channels_project = channels
    model.panoptic_deeplab.semantic_head.head_channels = (
        edits['semantic_head_channels'])
    instance = model.panoptic_deeplab.instance
    instance.center_head.head_channels = edits['instance_head_channels']
    instance.regression_head.head_channels = edits['instance_head_channels']
  # The ASPP pools over the training crop / output stride; a crop equal to the
  # input makes that global pooling, as in the Cityscapes configs.
  config.train_dataset_options.crop_size[:] = [height, width]
  textproto = text_format.MessageToString(config)
  # Drop path acts only in training; off, the training-mode pass that sets the
  # batch-norm statistics runs the network inference runs.
  config.model_options.backbone.drop_path_keep_prob = 1.0
  network = deeplab.DeepLab(
      config, dataset.MAP_NAME_TO_DATASET_INFO[
          config.train_dataset_options.dataset])
  return network, config, textproto


def run_deeplab2(src: str, out: str, size: str, seed: int, fixture: bool):
  """Builds, randomizes, saves and runs DeepLab2's model (DeepLab2's env)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  height, width = SIZES[size]
  network, _, textproto = _build_deeplab2(src, size, height, width)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  rng = np.random.RandomState(seed)
  image = rng.uniform(0, 255, (1, height, width, 3)).astype(np.float32)
  # Smooth structure on top of noise, so logits and centers are not flat.
  yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
  image[0, ..., 0] = image[0, ..., 0] * 0.3 + 180 * np.sin(9 * xx) ** 2
  image[0, ..., 1] = image[0, ..., 1] * 0.3 + 180 * np.cos(7 * yy) ** 2
  image = np.round(np.clip(image, 0, 255))
  network(tf.constant(image), training=False)
  # Random, not initial, values: gamma/beta away from 1/0 and the
  # zero-initialized residual gammas made non-zero, so every weight matters.
  for variable in network.weights:
    shape = variable.shape
    name = variable.name
    if 'moving_' in name:
      continue
    if 'beta' in name:
      value = rng.normal(0, 0.2, shape)
    elif 'gamma' in name:
      value = rng.uniform(0.7, 1.3, shape)
    else:
      fan_in = int(np.prod(shape[:2] if 'depthwise' in name else shape[:-1]))
      value = rng.normal(0, np.sqrt(2.0 / max(1, fan_in)), shape)
    variable.assign(value.astype(np.float32))
  # Batch-norm statistics of this image (one training-mode pass at momentum
  # 0), so activations keep their scale and vary over the image as a trained
  # network's do, instead of dying out or blowing up with depth.
  # (DeepLab2's SyncBatchNormalization does not subclass BatchNormalization.)
  norms = [m for m in network.submodules if hasattr(m, 'moving_variance')]
  dropouts = [m for m in network.submodules
              if isinstance(m, tf.keras.layers.Dropout)]
  for layer in norms + dropouts:
    layer.saved = layer.momentum if layer in norms else layer.rate
    setattr(layer, 'momentum' if layer in norms else 'rate', 0.0)
  network(tf.constant(image), training=True)
  for layer in norms + dropouts:
    setattr(layer, 'momentum' if layer in norms else 'rate', layer.saved)
  for norm in norms:  # The pooled ASPP branch (1x1) has no batch variance.
    norm.moving_variance.assign(tf.maximum(norm.moving_variance, 0.01))
  global_step = tf.Variable(1234, dtype=tf.int64, name='global_step')
  optimizer = tf.keras.optimizers.Adam(learning_rate=1e-4)
  if not fixture:
    # Zero gradients create the Adam slots without moving the weights.
    optimizer.apply_gradients(
        [(tf.zeros_like(v), v) for v in network.trainable_variables])
  items = dict(global_step=global_step, optimizer=optimizer,
               **network.checkpoint_items)
  tf.train.Checkpoint(**items).write(os.path.join(out, CHECKPOINT))
  outputs = network(tf.constant(image), training=False)
  np.savez_compressed(
      os.path.join(out, OUTPUTS), image=image.astype(np.uint8),
      semantic_logits=outputs['semantic_logits'].numpy(),
      center_heatmap=outputs['center_heatmap'].numpy(),
      offset_map=outputs['offset_map'].numpy(),
      num_params=np.int64(network.count_params()))
  with open(os.path.join(out, TEXTPROTO), 'w') as f:
    f.write(textproto)


def run_ours(out: str) -> dict:
  """Imports DeepLab2's checkpoint, runs it here and compares (project env)."""
  # pylint: disable=g-import-not-at-top
  import gin
  import numpy as np
  import tensorflow as tf
  from official_naive_student import common
  from official_naive_student.core import gin_utils
  from official_naive_student.core import inference
  from official_naive_student.serving import export_lib
  from official_naive_student.tools import import_checkpoint
  # pylint: enable=g-import-not-at-top
  imported = os.path.join(out, 'imported')
  model, report, settings = import_checkpoint.import_deeplab2(
      os.path.join(out, CHECKPOINT), os.path.join(out, TEXTPROTO))
  dataset = import_checkpoint.resolve_dataset(
      settings, None, report.model_options['num_classes'])
  if not tf.train.latest_checkpoint(imported):
    import_checkpoint.write_output(model, report, imported, dataset, settings,
                                   os.path.join(out, CHECKPOINT))
  # The exported files, not the in-memory model, are what users get.
  gin.clear_config()
  gin_utils.parse_gin([os.path.join(imported, import_checkpoint.GIN_FILE)], [])
  task = export_lib.build_task_from_gin()
  model, _ = inference.load_model(task.build_model, imported)
  reference = np.load(os.path.join(out, OUTPUTS))
  image = tf.constant(reference['image'], tf.float32)
  ours = model(image, training=False)
  theirs = {
      common.PRED_SEMANTIC_LOGITS: reference['semantic_logits'],
      common.PRED_CENTER_HEATMAP: reference['center_heatmap'][..., None],
      common.PRED_OFFSET: reference['offset_map'],
  }
  post = task.build_post_processor()
  panoptic = {name: post({k: tf.constant(v) for k, v in outputs.items()})
              for name, outputs in (('ours', ours), ('deeplab2', theirs))}
  result = {
      'input': list(reference['image'].shape[1:3]),
      'params_deeplab2': int(reference['num_params']),
      'params_ours': int(model.count_params()),
      'variables_imported': len(report.mapped),
  }
  for key in theirs:
    result[f'max_abs_diff/{key}'] = float(
        np.max(np.abs(ours[key].numpy() - theirs[key])))
    result[f'max_abs/{key}'] = float(np.max(np.abs(theirs[key])))
  result['semantic_argmax_agreement'] = float(np.mean(
      np.argmax(ours[common.PRED_SEMANTIC_LOGITS].numpy(), -1)
      == np.argmax(theirs[common.PRED_SEMANTIC_LOGITS], -1)))
  result['panoptic_agreement'] = float(np.mean(
      panoptic['ours'][common.PRED_PANOPTIC].numpy()
      == panoptic['deeplab2'][common.PRED_PANOPTIC].numpy()))
  result['instances'] = int(len(np.unique(
      panoptic['deeplab2'][common.PRED_PANOPTIC].numpy())))
  return result


def main(argv):
  del argv
  out = _OUT.value
  os.makedirs(out, exist_ok=True)
  if _STAGE.value in ('all', 'deeplab2'):
    if _STAGE.value == 'deeplab2':
      run_deeplab2(_DEEPLAB2_SRC.value, out, _SIZE.value, _SEED.value,
                   _FIXTURE.value)
      return
    if not _DEEPLAB2_SRC.value:
      raise app.UsageError('--deeplab2_src is required')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    subprocess.run(
        [_DEEPLAB2_PYTHON.value, os.path.abspath(__file__), '--stage',
         'deeplab2', '--deeplab2_src', _DEEPLAB2_SRC.value, '--out', out,
         '--size', _SIZE.value, '--seed', str(_SEED.value),
         f'--fixture={_FIXTURE.value}'], check=True, env=env)
  result = run_ours(out)
  print(json.dumps(result, indent=1))
  with open(os.path.join(out, 'result.json'), 'w') as f:
    json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
