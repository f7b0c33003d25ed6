"""Trains and evaluates Panoptic-DeepLab, or runs a whole Naive-Student chain.

  python train.py --gin_file gin/demo/naive_student.gin --model_dir runs/demo
  python train.py --gin_file gin/demo/teacher.gin --model_dir runs/t --mode eval

Everything but the model folder and the mode is bound by gin.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from official_naive_student.core import gin_utils  # pylint: disable=g-import-not-at-top
from official_naive_student.core import train_lib  # pylint: disable=g-import-not-at-top

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config files.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Output folder.',
                                 required=True)
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', list(train_lib.MODES),
                          'What to run.')


def main(argv):
  del argv
  gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
  train_lib.run_experiment(model_dir=_MODEL_DIR.value, mode=_MODE.value)


if __name__ == '__main__':
  app.run(main)
