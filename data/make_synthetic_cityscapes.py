r"""Generates the synthetic Cityscapes-format street-video dataset.

Example (50 snippets of 30 frames at 256x512, 200 unlabeled extra images):

  python data/make_synthetic_cityscapes.py --out /tmp/synth --sequences 50 \
      --seed 0 --extra_images 200

The output is a Cityscapes root (leftImg8bit_sequence, leftImg8bit, gtFine with
createPanopticImgs' panoptic ground truth) plus hidden_gt/ with labels of
every frame; see official_naive_student/dataloaders/synthetic/layout.py.
Re-running with the same flags resumes a killed run.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from official_naive_student.dataloaders.synthetic import writer  # pylint: disable=g-import-not-at-top,wrong-import-position

_OUT = flags.DEFINE_string('out', None, 'Dataset root to write.', required=True)
_SEQUENCES = flags.DEFINE_integer('sequences', 50, 'Snippets (train + val).')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed; fixes every byte.')
_HEIGHT = flags.DEFINE_integer('height', 256, 'Frame height in pixels.')
_WIDTH = flags.DEFINE_integer('width', 512, 'Frame width in pixels.')
_FRAMES = flags.DEFINE_integer('frames_per_sequence', 30, 'Frames a snippet.')
_LABELED = flags.DEFINE_integer('labeled_frame', 19,
                                '0-based annotated frame of a snippet.')
_EXTRA = flags.DEFINE_integer('extra_images', 0,
                              'Unlabeled images in leftImg8bit/train_extra.')
_SPLIT_SIZES = flags.DEFINE_list(
    'split_sizes', None,
    'e.g. train=40,val=10 (must sum to --sequences); default 80/20.')
_HIDDEN_PANOPTIC = flags.DEFINE_bool(
    'hidden_panoptic', False,
    'Also run createPanopticImgs on hidden_gt/ (~14 ms CPU a 256x512 frame).')
_WORKERS = flags.DEFINE_integer('num_workers', None,
                                'Processes; default: CPU count.')


def _parse_split_sizes(items):
  if not items:
    return None
  sizes = {}
  for item in items:
    name, sep, count = item.partition('=')
    if not sep or not count.strip().isdigit():
      raise app.UsageError(f'--split_sizes item {item!r} is not split=count')
    sizes[name.strip()] = int(count)
  return sizes


def main(argv):
  del argv
  info = writer.make_synthetic_cityscapes(
      _OUT.value, _SEQUENCES.value, _SEED.value, height=_HEIGHT.value,
      width=_WIDTH.value, frames_per_sequence=_FRAMES.value,
      labeled_frame=_LABELED.value, extra_images=_EXTRA.value,
      split_sizes=_parse_split_sizes(_SPLIT_SIZES.value),
      hidden_panoptic=_HIDDEN_PANOPTIC.value, num_workers=_WORKERS.value)
  print(f'{_OUT.value}: {info["split_sizes"]}, {info["extra_images"]} extra; '
        f'{info["frames_rendered"]} frames rendered')


if __name__ == '__main__':
  app.run(main)
