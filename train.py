"""Trains and evaluates Panoptic-DeepLab, or runs a whole Naive-Student chain.

  python train.py --gin_file gin/demo/naive_student.gin --model_dir runs/demo
  python train.py --gin_file gin/demo/teacher.gin --model_dir runs/t --mode eval

Everything but the model folder and the mode is bound by gin.

Any error ends the process at once with exit code 1, one short message (it names
the bad file for input errors) and one traceback: a normal exit would first shut
down tf.data, which can wait forever on a decode step that is still running.
"""

import os
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from official_naive_student.core import gin_utils  # pylint: disable=g-import-not-at-top
from official_naive_student.core import train_lib  # pylint: disable=g-import-not-at-top

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config files.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'Output folder.',
                                 required=True)
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', list(train_lib.MODES),
                          'What to run.')

# A Python exception line, e.g. 'ValueError: x.png: truncated labelIds PNG'.
_EXCEPTION_LINE = re.compile(r'\b[A-Z]\w*(Error|Exception|Interrupt): .+')


def short_message(error: BaseException) -> str:
  """What went wrong, without the tracebacks tf.data errors carry inside.

  An error raised in a tf.data function (e.g. by a label loader) comes back as
  an OpError whose text holds the Python traceback; its last exception line is
  the one that names the file.
  """
  lines = [l.rstrip() for l in str(error).splitlines() if l.strip() and
           not l.strip().startswith('In call to configurable')]
  if isinstance(error, tf.errors.OpError):
    found = [m for m in map(_EXCEPTION_LINE.search, lines) if m]
    if found:
      return found[-1].group(0).strip()
    lines = lines[:1]
  return f'{type(error).__name__}: ' + '\n'.join(lines)[:4000]


def exit_on_error(error: BaseException) -> None:
  """Reports `error` once and ends the process now, skipping all cleanup."""
  traceback.print_exception(error)
  logging.error('train.py failed: %s', short_message(error))
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  code = 130 if isinstance(error, KeyboardInterrupt) else 1
  os._exit(code)  # pylint: disable=protected-access


def main(argv):
  del argv
  try:
    gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
    train_lib.run_experiment(model_dir=_MODEL_DIR.value, mode=_MODE.value)
  except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
    exit_on_error(e)


if __name__ == '__main__':
  app.run(main)
