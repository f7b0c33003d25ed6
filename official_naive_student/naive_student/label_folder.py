"""The pseudo-label folder: where a Teacher's labels live, frame by frame.

Labels are written in exactly the panoptic format of cityscapesscripts'
`csCreatePanopticImgs` (one COCO json plus RGB PNGs, `category_id` = label id),
so the Student reads them with `cityscapes_files.find_records(panoptic_json=...)`
and the same `InputPipeline` as human labels. Writers (`pseudo_labeling`,
`oracle_labels`) and readers (the loop, `label_quality`, tools) share this one
description of the folder:

  cityscapes_panoptic_pseudo/<image_id>_panoptic.png   one PNG per frame
  segments/<image_id>.json                              its json entry (fragment)
  shards/shard-<i>-of-<n>.json                          shard i finished
  settings.json                                         what produced the labels
  cityscapes_panoptic_pseudo.json                       merged json (last but one)
  DONE                                                  written last

Every file is written to a temporary name and renamed. A frame is done when its
fragment exists (it is written after its PNG), so a killed run resumes where it
stopped. `shard i of n` labels records[i::n] of the records sorted by image id;
independent processes cover every frame once, and whichever finishes last merges
the fragments (`merge_pseudo_labels`).
"""

import os
import shutil
from typing import List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.evaluation import cityscapes_results
from official_naive_student.naive_student import label_settings

LABEL_NAME = 'cityscapes_panoptic_pseudo'
SEGMENTS_DIR = 'segments'
SHARDS_DIR = 'shards'
SETTINGS_FILE = label_settings.SETTINGS_FILE
_PNG_SUFFIX = '_panoptic.png'
# A temporary file untouched this long belongs to a killed writer, whichever.
STALE_SECONDS = 3600

Record = cityscapes_files.Record


def panoptic_json_path(output_dir: str) -> str:
  """The merged json; its PNGs are in the folder of the same name."""
  return os.path.join(output_dir, LABEL_NAME + '.json')


def _png_dir(output_dir: str) -> str:
  return os.path.join(output_dir, LABEL_NAME)


def fragment_path(output_dir: str, image_id: str) -> str:
  return os.path.join(output_dir, SEGMENTS_DIR, image_id + '.json')


def _shard_marker(output_dir: str, shard: int, num_shards: int) -> str:
  return os.path.join(output_dir, SHARDS_DIR,
                      f'shard-{shard:05d}-of-{num_shards:05d}.json')


def shard_records(records: Sequence[Record], shard: int = 0,
                  num_shards: int = 1) -> list:
  """records[shard::num_shards] of the records sorted by image id.

  Sorting first makes the split independent of the caller's order, so processes
  that found the records separately still partition them exactly.
  """
  if not 0 <= shard < num_shards:
    raise ValueError(f'shard {shard} is not in [0, num_shards={num_shards})')
  ordered = sorted(records, key=lambda r: r.image_id)
  for a, b in zip(ordered, ordered[1:]):
    if a.image_id == b.image_id:
      raise ValueError(f'{b.image_path}: image id {b.image_id} appears twice '
                       f'(also {a.image_path})')
  return ordered[shard::num_shards]


def write_frame(output_dir: str, image_id: str, panoptic: np.ndarray,
                dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> dict:
  """Writes one frame's panoptic ids [H, W]: its PNG, then its json fragment.

  The fragment comes last: its presence is what marks the frame done.
  """
  annotation = cityscapes_results.write_panoptic_png(
      _png_dir(output_dir), image_id, panoptic, dataset)
  file_io.atomic_write_json(fragment_path(output_dir, image_id), annotation,
                            indent=None)
  return annotation


def remove_stale_temporaries(output_dir: str, shard: int, num_shards: int,
                              image_ids) -> None:
  """Deletes temporaries of killed writers: this shard's now, others' when old.

  Other shards may be running and writing theirs (frames, their marker, the
  settings, the merged json), so those go only after `STALE_SECONDS`.
  """
  marker = os.path.basename(_shard_marker(output_dir, shard, num_shards))
  owned = {
      _png_dir(output_dir):
          lambda target: target[:-len(_PNG_SUFFIX)] in image_ids,
      os.path.join(output_dir, SEGMENTS_DIR):
          lambda target: target[:-len('.json')] in image_ids,
      os.path.join(output_dir, SHARDS_DIR): lambda target: target == marker,
      output_dir: lambda target: False,
  }
  for folder, own in owned.items():
    removed = file_io.remove_temporaries(folder, own, STALE_SECONDS)
    if removed:
      logging.info('Removed %d temporaries of killed writers in %s',
                   len(removed), folder)


def frames_to_label(output_dir: str, records: Sequence[Record], shard: int = 0,
                    num_shards: int = 1) -> Tuple[List[Record], List[Record]]:
  """(this shard's records, those of them not labeled yet).

  Temporaries of killed writers are removed first (this shard's at once).
  """
  mine = shard_records(records, shard, num_shards)
  remove_stale_temporaries(output_dir, shard, num_shards,
                           {r.image_id for r in mine})
  todo = [r for r in mine
          if not os.path.exists(fragment_path(output_dir, r.image_id))]
  return mine, todo


def mark_shard_done(output_dir: str, shard: int, num_shards: int,
                    frames: int) -> None:
  file_io.atomic_write_json(_shard_marker(output_dir, shard, num_shards),
                            {'frames': frames})


def remove_labels(output_dir: str) -> None:
  """Deletes what this stage wrote in `output_dir`; other files stay.

  DONE goes first and settings.json last: a run killed in between leaves a
  folder that is neither finished nor reusable with other settings.
  """
  for name in (file_io.DONE_MARKER, LABEL_NAME + '.json'):
    if os.path.exists(os.path.join(output_dir, name)):
      os.remove(os.path.join(output_dir, name))
  for name in (SHARDS_DIR, SEGMENTS_DIR, LABEL_NAME):
    shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
  if os.path.exists(os.path.join(output_dir, SETTINGS_FILE)):
    os.remove(os.path.join(output_dir, SETTINGS_FILE))


def pending_shards(output_dir: str) -> Optional[list]:
  """Shards of settings.json without a marker yet (None: no settings.json)."""
  settings = label_settings.read_settings(output_dir)
  if settings is None:
    return None
  n = settings['num_shards']
  return [i for i in range(n)
          if not os.path.exists(_shard_marker(output_dir, i, n))]


def merge_pseudo_labels(output_dir: str,
                        dataset: datasets.DatasetInfo = datasets.CITYSCAPES
                        ) -> str:
  """Merges the per-frame fragments into the panoptic json, then writes DONE.

  Any process may run it once all shards are done; running it twice writes the
  same files. Without settings.json (labels written with `write_frame` directly)
  every fragment present is merged.

  Returns:
    The json path.

  Raises:
    RuntimeError: a shard is not done, or the fragments do not add up.
  """
  settings = label_settings.read_settings(output_dir)
  pending = pending_shards(output_dir)
  if pending:
    raise RuntimeError(f'{output_dir}: shards {pending} of '
                       f'{settings["num_shards"]} are not done')
  folder = os.path.join(output_dir, SEGMENTS_DIR)
  names = sorted(n for n in os.listdir(folder)
                 if n.endswith('.json') and '.tmp-' not in n)
  if settings is not None and len(names) != settings['num_records']:
    raise RuntimeError(f'{folder}: {len(names)} frames labeled, settings.json '
                       f'expects {settings["num_records"]}')
  annotations = []
  for name in names:
    annotation = file_io.read_json(os.path.join(folder, name))
    png = os.path.join(_png_dir(output_dir), annotation['file_name'])
    if not os.path.exists(png):
      raise RuntimeError(f'{os.path.join(folder, name)}: its PNG {png} is '
                         'missing')
    annotations.append(annotation)
  json_path = panoptic_json_path(output_dir)
  cityscapes_results.write_panoptic_json(json_path, annotations, dataset)
  file_io.mark_done(output_dir, {'frames': len(annotations),
                                 'panoptic_json': json_path})
  logging.info('Merged %d pseudo-labels into %s', len(annotations), json_path)
  return json_path
