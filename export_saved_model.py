"""Exports a trained Panoptic-DeepLab checkpoint as a SavedModel for TF Serving.

  python export_saved_model.py --gin_file gin/demo/teacher.gin \
      --checkpoint runs/teacher --export_dir exported/panoptic

writes `exported/panoptic/<version>/` (default version: unix time) with the
signatures `serving_default` (PNG/JPEG bytes) and `serve_images` (uint8 pixels);
see docs/serving.md. The gin files are the training ones: they name the model,
the dataset and the post-processing; data paths in them are not used.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from official_naive_student.core import gin_utils  # pylint: disable=g-import-not-at-top
from official_naive_student.serving import export_lib  # pylint: disable=g-import-not-at-top

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config files.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
_GIN_SCOPE = flags.DEFINE_string(
    'gin_scope', None, 'Scope of the task bindings, e.g. teacher or student.')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, 'Checkpoint prefix, checkpoint folder or model_dir '
    '(its latest checkpoint).', required=True)
_EXPORT_DIR = flags.DEFINE_string(
    'export_dir', None, 'Model base path; the model goes to <export_dir>/'
    '<version>/.', required=True)
_VERSION = flags.DEFINE_integer('version', None,
                                'Version folder (default: unix time).')
_INPUT_SIZE = flags.DEFINE_list(
    'input_size', None, 'Optional fixed H,W: smaller images are padded, '
    'larger ones rejected. Default: any size.')
_TTA_SCALES = flags.DEFINE_list('tta_scales', ['1.0'],
                                'Test-time scales, e.g. 0.5,0.75,1,1.25,1.5,1.75.')
_TTA_FLIP = flags.DEFINE_bool('tta_flip', False, 'Also run mirrored images.')
_OUTPUT_STRIDE = flags.DEFINE_integer(
    'output_stride', None, 'Backbone output stride at inference (8, 16, 32); '
    'binds build_panoptic_deeplab.output_stride. Default: as trained.')
_SEMANTIC_PROBS = flags.DEFINE_bool(
    'include_semantic_probs', False,
    'Also return semantic_probs [B, H, W, C] (large).')
_MAX_PIXELS = flags.DEFINE_integer(
    'max_pixels', None, 'Refuse images needing more pixels at the largest '
    'TTA scale (an HxW image needs H*W*scale^2). Default: what a 1024x2048 '
    'frame (or --input_size) needs; 0: no limit.', lower_bound=0)
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace an existing version folder.')


def main(argv):
  del argv
  bindings = list(_GIN_BINDINGS.value)
  if _OUTPUT_STRIDE.value is not None:
    bindings.append(f'build_panoptic_deeplab.output_stride = '
                    f'{_OUTPUT_STRIDE.value}')
  gin_utils.parse_gin(_GIN_FILE.value, bindings)
  input_size = None
  if _INPUT_SIZE.value:
    if len(_INPUT_SIZE.value) != 2:
      raise app.UsageError(f'--input_size must be H,W, got {_INPUT_SIZE.value}')
    input_size = tuple(int(v) for v in _INPUT_SIZE.value)
  task = export_lib.build_task_from_gin(_GIN_SCOPE.value)
  path = export_lib.export(
      task, _CHECKPOINT.value, _EXPORT_DIR.value, version=_VERSION.value,
      input_size=input_size,
      tta_scales=[float(s) for s in _TTA_SCALES.value],
      tta_flip=_TTA_FLIP.value,
      include_semantic_probs=_SEMANTIC_PROBS.value,
      max_pixels=_MAX_PIXELS.value, overwrite=_OVERWRITE.value)
  print(f'Exported {path}', flush=True)


if __name__ == '__main__':
  app.run(main)
