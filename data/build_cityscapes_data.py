"""Converts a Cityscapes split (or CamVid, or pseudo-labels) to validated TFRecords.

Every example is decoded and checked before it is written, so a bad file stops
the conversion with its path instead of a training run hours later. Re-running
the same command after a kill resumes: finished shards are kept.

  python data/build_cityscapes_data.py --cityscapes_root=/data/cityscapes \
      --split=train-fine --output_dir=/data/tfrecords/train-fine \
      --num_shards=32 --num_workers=8

Pseudo-labels (a panoptic json + PNG folder) replace the split's labels with
--panoptic_json (and --label_root if the PNGs are not next to the json).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from official_naive_student.dataloaders import camvid
from official_naive_student.dataloaders import cityscapes_files
# pylint: enable=g-import-not-at-top,wrong-import-position

_ROOT = flags.DEFINE_string('cityscapes_root', None, 'Cityscapes root folder.')
_CAMVID_ROOT = flags.DEFINE_string(
    'camvid_root', None, 'CamVid root instead of --cityscapes_root.')
_SPLIT = flags.DEFINE_string(
    'split', 'train-fine', "Split, e.g. 'train-fine', 'train-fine+val-fine', "
    "'train-sequence' (CamVid: 'train', 'val').")
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Output folder.')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 16, 'Number of shards.')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', 4, 'Decoding/validating processes (0: in process).')
_PANOPTIC_JSON = flags.DEFINE_string(
    'panoptic_json', None, 'Panoptic json whose labels replace the split\'s.')
_LABEL_ROOT = flags.DEFINE_string(
    'label_root', None, 'Folder of the json\'s PNGs (default: beside it).')
_CATEGORY_ID_SPACE = flags.DEFINE_enum(
    'category_id_space', 'label_id', ['label_id', 'train_id'],
    'What the json\'s category_id values are.')
_CAMVID_KEEP_EVERY_K = flags.DEFINE_integer(
    'camvid_keep_every_k', 1, 'CamVid: keep labels of every k-th frame.')
_CAMVID_UNLABELED = flags.DEFINE_bool(
    'camvid_unlabeled', False, 'CamVid: write the frames whose labels were '
    'dropped (image only) instead of the labeled ones.')


def main(argv):
  del argv
  # Imported here, not at the top: the writer's 'spawn' workers re-import this
  # script, and they only need numpy and PIL, not TensorFlow.
  from official_naive_student.dataloaders import tfrecord_writer  # pylint: disable=g-import-not-at-top
  if (_ROOT.value is None) == (_CAMVID_ROOT.value is None):
    raise app.UsageError(
        'Give exactly one of --cityscapes_root and --camvid_root.')
  if _CAMVID_ROOT.value:
    found = camvid.find_records(_CAMVID_ROOT.value, _SPLIT.value,
                                _CAMVID_KEEP_EVERY_K.value)
    records = found.unlabeled if _CAMVID_UNLABELED.value else found.labeled
    dataset_name = 'camvid'
  else:
    records = cityscapes_files.find_records(
        _ROOT.value, _SPLIT.value, panoptic_json=_PANOPTIC_JSON.value,
        label_root=_LABEL_ROOT.value,
        category_id_space=_CATEGORY_ID_SPACE.value)
    dataset_name = 'cityscapes'
  logging.info('%d records (%d labeled) in %s', len(records),
               sum(r.has_label for r in records), _SPLIT.value)
  manifest = tfrecord_writer.write_tfrecords(
      records, _OUTPUT_DIR.value, _NUM_SHARDS.value,
      dataset_name=dataset_name, num_workers=_NUM_WORKERS.value,
      prefix=tfrecord_writer.default_prefix(_SPLIT.value), split=_SPLIT.value)
  logging.info('Wrote %d examples in %d shards to %s',
               manifest['num_examples'], len(manifest['shards']),
               _OUTPUT_DIR.value)


if __name__ == '__main__':
  flags.mark_flag_as_required('output_dir')
  app.run(main)
