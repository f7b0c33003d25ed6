"""Panoptic predictions for local images, from a checkpoint or an exported model.

  python predict.py --gin_file gin/demo/teacher.gin --checkpoint runs/teacher \
      --input 'frames/*.png' --output predictions
  python predict.py --saved_model exported/panoptic --input frames/ \
      --output predictions

writes, per input, `<name>_panoptic.png` (cityscapesscripts RGB encoding),
`<name>_trainIds.png`, `<name>_labelIds.png`, `<name>_instanceIds.png` and
`<name>_overlay.png` (see official_naive_student/serving/prediction_pngs.py).
An unreadable or corrupt image is reported and skipped; the exit status is 1
and the last lines list every failed file with its reason.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from official_naive_student.core import gin_utils  # pylint: disable=g-import-not-at-top
from official_naive_student.serving import export_lib  # pylint: disable=g-import-not-at-top
from official_naive_student.serving import predict_lib  # pylint: disable=g-import-not-at-top

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config files '
                                      '(with --checkpoint).')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
_GIN_SCOPE = flags.DEFINE_string('gin_scope', None,
                                 'Scope of the task bindings (teacher, ...).')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, 'Checkpoint prefix, folder or model_dir.')
_SAVED_MODEL = flags.DEFINE_string(
    'saved_model', None, 'An exported SavedModel, or its base folder '
    '(the highest version is used).')
_INPUT = flags.DEFINE_string('input', None, 'Image file, folder or glob.',
                             required=True)
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder.', required=True)
_TTA_SCALES = flags.DEFINE_list('tta_scales', ['1.0'],
                                'Test-time scales (with --checkpoint).')
_TTA_FLIP = flags.DEFINE_bool('tta_flip', False,
                              'Also run mirrored images (with --checkpoint).')


def main(argv):
  del argv
  if (_CHECKPOINT.value is None) == (_SAVED_MODEL.value is None):
    raise app.UsageError('give exactly one of --checkpoint and --saved_model')
  paths = predict_lib.list_images(_INPUT.value)
  if _SAVED_MODEL.value:
    predictor, info = predict_lib.saved_model_predictor(_SAVED_MODEL.value)
  else:
    gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
    task = export_lib.build_task_from_gin(_GIN_SCOPE.value)
    predictor, info = predict_lib.checkpoint_predictor(
        task, _CHECKPOINT.value, [float(s) for s in _TTA_SCALES.value],
        _TTA_FLIP.value)
  return predict_lib.predict_and_report(predictor, paths, _OUTPUT.value, info)


if __name__ == '__main__':
  app.run(main)
