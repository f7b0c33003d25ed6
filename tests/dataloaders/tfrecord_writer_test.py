"""Tests of the TFRecord conversion: round trip, validation, resume after a kill."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders import input_pipeline
from official_naive_student.dataloaders import tfrecord_writer as tfw
from official_naive_student.dataloaders import tiny_cityscapes


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('cityscapes'))
  tiny_cityscapes.write_tree(path, sequences=False)
  return path


def _read_all(files, with_label=True):
  out = {}
  for serialized in tf.data.TFRecordDataset(files):
    ex = input_pipeline.parse_example(serialized, with_label)
    out[ex[common.IMAGE_NAME].numpy().decode()] = ex
  return out


def test_round_trip_equals_decoding_files(root, tmp_path):
  records = cf.find_records(root, 'train-fine+val-fine')
  out = str(tmp_path / 'tfr')
  manifest = tfw.write_tfrecords(records, out, num_shards=2, num_workers=2,
                                 split='train-fine+val-fine', progress=False)
  assert manifest['num_examples'] == 5 and manifest['num_labeled'] == 5
  assert [s['num_examples'] for s in manifest['shards']] == [3, 2]
  examples = _read_all(tfw.manifest_files(out))
  assert sorted(examples) == [r.image_id for r in records]
  for record in records:
    image, panoptic = decode.load_example(record, datasets.CITYSCAPES)
    ex = examples[record.image_id]
    np.testing.assert_array_equal(ex[common.IMAGE].numpy(), image)
    np.testing.assert_array_equal(ex[common.GT_PANOPTIC].numpy(), panoptic)
    assert ex[common.SEQUENCE_ID].numpy().decode() == record.sequence_id
    assert ex[input_pipeline.FRAME].numpy() == record.frame


def test_unlabeled_records(root, tmp_path):
  records = cf.find_records(root, 'test-fine')
  out = str(tmp_path / 'tfr')
  manifest = tfw.write_tfrecords(records, out, 1, progress=False)
  assert manifest['num_labeled'] == 0
  ex, = _read_all(tfw.manifest_files(out), with_label=False).values()
  assert ex[common.IMAGE].shape == (32, 64, 3)
  with pytest.raises(tf.errors.InvalidArgumentError, match='no label'):
    _read_all(tfw.manifest_files(out), with_label=True)


def test_resume_after_kill(root, tmp_path):
  records = cf.find_records(root, 'train-fine+val-fine')
  out = str(tmp_path / 'tfr')
  tfw.write_tfrecords(records, out, 3, progress=False)
  names = tfw.shard_names('data', 3)
  expected = _read_all(tfw.manifest_files(out))
  # A kill during shard 1: shard 1 absent, its temporary left behind, no manifest.
  os.remove(os.path.join(out, names[1]))
  os.remove(os.path.join(out, tfw.MANIFEST_NAME))
  temp = os.path.join(out, names[1] + '.tmp-999')
  with open(temp, 'wb') as f:
    f.write(b'half a shard')
  kept = os.path.join(out, names[0])
  os.utime(kept, (1, 1))  # A rewrite would change this mtime.
  tfw.write_tfrecords(records, out, 3, progress=False)
  assert os.stat(kept).st_mtime == 1
  assert not os.path.exists(temp)
  assert sorted(os.listdir(out)) == sorted(
      names + [tfw.MANIFEST_NAME, 'data.plan.json'])
  resumed = _read_all(tfw.manifest_files(out))
  assert sorted(resumed) == sorted(expected)
  for key, ex in expected.items():
    np.testing.assert_array_equal(resumed[key][common.GT_PANOPTIC],
                                  ex[common.GT_PANOPTIC])


def test_resume_with_other_records_fails(root, tmp_path):
  records = cf.find_records(root, 'train-fine')
  out = str(tmp_path / 'tfr')
  tfw.write_tfrecords(records, out, 2, progress=False)
  with pytest.raises(ValueError, match='data.plan.json: .* other records'):
    tfw.write_tfrecords(records[:2], out, 2, progress=False)


def test_all_bad_examples_reported_before_training(root, tmp_path):
  copy = str(tmp_path / 'cs')
  shutil.copytree(root, copy)
  records = cf.find_records(copy, 'train-fine+val-fine')
  # Two broken files in different shards: a corrupt image and a cut label.
  with open(records[0].image_path, 'wb') as f:
    f.write(b'not a png')
  with open(records[3].label_path, 'rb') as f:
    data = f.read()
  with open(records[3].label_path, 'wb') as f:
    f.write(data[:len(data) // 2])
  out = str(tmp_path / 'tfr')
  with pytest.raises(ValueError) as e:
    tfw.write_tfrecords(records, out, 4, progress=False)
  message = str(e.value)
  assert message.startswith('2 of 5 examples failed validation')
  assert records[0].image_path in message and records[3].label_path in message
  written = sorted(n for n in os.listdir(out) if n.endswith('.tfrecord'))
  # Shard i holds records i, i + 4: shards 0 and 3 are bad, 1 and 2 written.
  assert written == [tfw.shard_names('data', 4)[i] for i in (1, 2)]
  assert not os.path.exists(os.path.join(out, tfw.MANIFEST_NAME))
