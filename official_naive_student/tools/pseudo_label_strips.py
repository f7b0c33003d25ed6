r"""PNG strips of a snippet's pseudo-labels across iterations (the paper's appendix).

For each chosen frame of one video snippet, one PNG: the frame, then the
pseudo-label written by each iteration's Teacher, overlaid in the Cityscapes
palette with instance outlines (void shows as the plain frame). Reads a chain's
`iter<i>_pseudo_label/` folders; runs no network.

  python -m official_naive_student.tools.pseudo_label_strips \
      --model_dir runs/demo --sequence synthtown_000002 --output runs/demo/strips
"""

import argparse
import glob
import os
import sys
from typing import List, Optional, Sequence

import numpy as np

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import loop
from official_naive_student.serving import prediction_pngs

_GAP = 4  # White pixels between the panels of a strip.


def label_folders(model_dir: str) -> List[str]:
  """The chain's pseudo-label folders, by iteration; each must be merged."""
  folders = []
  iteration = 1
  while True:
    folder = loop.stage_dir(model_dir, iteration, 'pseudo_label')
    if not os.path.isdir(folder):
      break
    if not os.path.exists(label_folder.panoptic_json_path(folder)):
      raise FileNotFoundError(f'{folder}: pseudo-labels not finished (no '
                              'merged json yet)')
    folders.append(folder)
    iteration += 1
  if not folders:
    raise FileNotFoundError(f'{model_dir}: no iter<i>_pseudo_label folder')
  return folders


def strip(image: np.ndarray, labels: Sequence[np.ndarray],
          info: datasets.DatasetInfo) -> np.ndarray:
  """[H, (1 + n) W + gaps, 3]: the image, then each panoptic label overlaid."""
  void = info.ignore_label
  panels = [image]
  for panoptic in labels:
    semantic = panoptic // info.label_divisor
    panel = prediction_pngs.overlay(image, semantic, panoptic, info)
    panel[semantic == void] = image[semantic == void]
    panels.append(panel)
  gap = np.full((image.shape[0], _GAP, 3), 255, np.uint8)
  return np.concatenate(sum(([p, gap] for p in panels), [])[:-1], axis=1)


def _frame_paths(data_root: str) -> dict:
  """image id -> frame path, for every `*_leftImg8bit.png` under `data_root`."""
  suffix = '_leftImg8bit.png'
  return {os.path.basename(p)[:-len(suffix)]: p for p in glob.glob(
      os.path.join(data_root, '**', '*' + suffix), recursive=True)}


def write_strips(model_dir: str, data_root: str, sequence: str,
                 output_dir: str, frames: Optional[Sequence[int]] = None,
                 info: datasets.DatasetInfo = datasets.CITYSCAPES) -> List[str]:
  """Writes `<output_dir>/<image id>_strip.png` per frame; returns the paths."""
  annotations = [cityscapes_files.read_panoptic_json(
      label_folder.panoptic_json_path(f)) for f in label_folders(model_dir)]
  ids = sorted(i for i in annotations[0] if i.startswith(sequence + '_'))
  if frames is not None:
    ids = [i for i in ids if cityscapes_files.parse_image_id(i)[2] in frames]
  if not ids:
    raise ValueError(f'{model_dir}: no pseudo-labeled frame of sequence '
                     f'{sequence!r} (ids look like city_000001)')
  frame_paths = _frame_paths(data_root)
  paths = []
  for image_id in ids:
    if image_id not in frame_paths:
      raise FileNotFoundError(f'{data_root}: no frame {image_id}_leftImg8bit.png')
    labels = [decode.decode_panoptic_png(*annotation[image_id], info)
              for annotation in annotations]
    image = decode.decode_image(frame_paths[image_id])
    path = os.path.join(output_dir, f'{image_id}_strip.png')
    file_io.atomic_write_bytes(path, prediction_pngs.png_bytes(
        strip(image, labels, info)))
    paths.append(path)
  return paths


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--sequence', required=True,
                      help='<city>_<seq>, e.g. synthtown_000002')
  parser.add_argument('--data_root', default='runs/synthetic_demo',
                      help='Cityscapes root holding the frames')
  parser.add_argument('--frames', default=None,
                      help='comma-separated frame numbers (default: all)')
  parser.add_argument('--output', required=True)
  args = parser.parse_args(argv)
  frames = ([int(f) for f in args.frames.split(',')] if args.frames else None)
  paths = write_strips(args.model_dir, args.data_root, args.sequence,
                       args.output, frames)
  print(f'wrote {len(paths)} strips to {args.output}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
