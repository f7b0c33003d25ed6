"""Ego-car masks: the hood of the recording car is void in every pseudo-label.

Cityscapes labels the ego vehicle (label id 1) only in the annotated frame of each
30-frame snippet, but the car is in every frame of it. A teacher would otherwise
predict it as 'car' or 'road' and the student would learn that from pseudo-labels,
so Naive-Student voids, in each video frame's pseudo-label, the ego-car pixels of
its snippet's annotated frame (`Record.labeled_image_id` / `reference_label_path`,
set by `cityscapes_files`). All functions are pure except the file readers.

Tool: `python -m official_naive_student.naive_student.ego_car --cityscapes_root DIR
--split train-sequence [--output_json F]` prints (or writes) each snippet's mask
size, fraction and bounding box.
"""

import argparse
import json
import sys
from typing import Dict, Optional, Sequence

import numpy as np

from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode


def ego_car_mask(label_ids: np.ndarray) -> np.ndarray:
  """Bool [H, W], True where a labelIds map is the ego vehicle."""
  return np.asarray(label_ids) == datasets.CITYSCAPES_EGO_VEHICLE_ID


def apply_ego_car_void(panoptic: np.ndarray, mask: Optional[np.ndarray],
                       void_id: int) -> np.ndarray:
  """Returns `panoptic` with `void_id` under `mask` (None: unchanged copy).

  Args:
    panoptic: [H, W] panoptic ids (train-id space).
    mask: [H, W] bool ego-car mask of the frame's snippet, or None.
    void_id: panoptic id of void, `ignore_label * label_divisor`.
  """
  panoptic = np.array(panoptic, copy=True)
  if mask is None:
    return panoptic
  if mask.shape != panoptic.shape:
    raise ValueError(f'ego-car mask {mask.shape} != panoptic {panoptic.shape}')
  panoptic[mask] = void_id
  return panoptic


def snippet_masks(records: Sequence[cityscapes_files.Record]
                  ) -> Dict[str, np.ndarray]:
  """Annotated image id -> ego-car mask, read once per snippet.

  Records without a reference label (test frames, missing gtFine) get no entry.
  """
  masks = {}
  for record in records:
    key = record.labeled_image_id
    if key and record.reference_label_path and key not in masks:
      masks[key] = ego_car_mask(
          decode.decode_label_ids(record.reference_label_path))
  return masks


def mask_for(record: cityscapes_files.Record,
             masks: Dict[str, np.ndarray]) -> Optional[np.ndarray]:
  """The ego-car mask that applies to `record` (None if its snippet has none)."""
  return masks.get(record.labeled_image_id)


def summarize(mask: np.ndarray) -> dict:
  """pixels, fraction and bbox [x0, y0, x1, y1] (inclusive; None if empty)."""
  ys, xs = np.nonzero(mask)
  bbox = None
  if ys.size:
    bbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
  return {'pixels': int(ys.size), 'fraction': float(ys.size / mask.size),
          'bbox': bbox}


def report(records: Sequence[cityscapes_files.Record]) -> Dict[str, dict]:
  """Per snippet: sequence id, number of frames and `summarize` of its mask."""
  masks = snippet_masks(records)
  result = {}
  for record in records:
    key = record.labeled_image_id
    if key not in masks:
      continue
    if key not in result:
      result[key] = {'sequence_id': record.sequence_id, 'num_frames': 0,
                     **summarize(masks[key])}
    result[key]['num_frames'] += 1
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cityscapes_root', required=True)
  parser.add_argument('--split', default='train-sequence')
  parser.add_argument('--output_json', default=None)
  args = parser.parse_args(argv)
  records = cityscapes_files.find_records(args.cityscapes_root, args.split)
  result = report(records)
  text = json.dumps(result, indent=2, sort_keys=True) + '\n'
  if args.output_json:
    from official_naive_student.core import file_io  # pylint: disable=g-import-not-at-top
    file_io.atomic_write_text(args.output_json, text)
  else:
    sys.stdout.write(text)
  fractions = [v['fraction'] for v in result.values()]
  sys.stderr.write(f'{len(result)} snippets with an ego-car mask'
                   + (f', mean fraction {np.mean(fractions):.4f}\n'
                      if fractions else '\n'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
