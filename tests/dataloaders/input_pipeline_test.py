"""InputPipeline: static shapes, determinism, sharding, modes, named errors."""

import dataclasses

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import input_pipeline as ip
from official_naive_student.dataloaders import tfrecord_writer as tfw
from official_naive_student.dataloaders import tiny_cityscapes

CROP = (16, 24)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('cityscapes'))
  tiny_cityscapes.write_tree(root, sequences=False)
  records = cf.find_records(root, 'train-fine+val-fine')
  out = str(tmp_path_factory.mktemp('tfr'))
  tfw.write_tfrecords(records, out, 2, progress=False)
  return root, records, out


def _train(source, seed=3, **kwargs):
  return ip.InputPipeline(mode='train', global_batch_size=2, crop_size=CROP,
                          seed=seed, min_scale=0.75, max_scale=1.25, **source,
                          **kwargs)


def _take(ds, n):
  return [tf.nest.map_structure(lambda t: t.numpy(), x) for x in ds.take(n)]


def test_train_shapes_static_and_targets_consistent(data):
  ds = _train({'file_pattern': data[2]}).dataset_fn()
  features, labels = ds.element_spec
  assert features[common.IMAGE].shape == (2,) + CROP + (3,)
  assert features[common.IMAGE].dtype == tf.float32
  for spec in tf.nest.flatten(ds.element_spec):
    assert spec.shape.is_fully_defined(), spec
  assert labels[common.GT_PANOPTIC].dtype == tf.int32
  assert labels[common.GT_OFFSET].shape == (2,) + CROP + (2,)
  (features, labels), = _take(ds, 1)
  semantic = labels[common.GT_PANOPTIC] // 1000
  np.testing.assert_array_equal(labels[common.GT_SEMANTIC], semantic)
  image = features[common.IMAGE]
  assert 0 <= image.min() <= image.max() <= 255


def test_train_deterministic_for_a_seed(data):
  for source in ({'file_pattern': data[2]}, {'records': data[1]}):
    a = _take(_train(source).dataset_fn(), 3)
    b = _take(_train(source).dataset_fn(), 3)
    c = _take(_train(source, seed=4).dataset_fn(), 3)
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    assert not all(np.array_equal(x[0][common.IMAGE], y[0][common.IMAGE])
                   for x, y in zip(a, c))


def test_start_step_resumes_the_stream(data):
  """A pipeline started at step k yields what an uninterrupted one yields next."""
  for source in ({'file_pattern': data[2]}, {'records': data[1]}):
    full = _take(_train(source).dataset_fn(), 5)
    resumed = _take(_train(source).dataset_fn(start_step=3), 2)
    tf.nest.map_structure(np.testing.assert_array_equal, full[3:], resumed)


@pytest.mark.parametrize('start_step', [0, 3])
def test_cached_decoding_gives_the_same_batches(data, start_step):
  records = data[1]
  plain, cached = (
      _take(_train({'records': records}, cache_decoded=cache).dataset_fn(
          start_step=start_step), 2 * len(records))
      for cache in (False, True))
  for a, b in zip(plain, cached):  # Several epochs: reshuffled alike.
    tf.nest.map_structure(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize('num_pipelines', [2, 3])  # file vs example sharding
def test_sharding_covers_every_example_once(data, num_pipelines):
  seen = []
  for pipeline_id in range(num_pipelines):
    context = tf.distribute.InputContext(
        num_input_pipelines=num_pipelines, input_pipeline_id=pipeline_id,
        num_replicas_in_sync=num_pipelines)
    pipeline = ip.InputPipeline(file_pattern=data[2], mode='eval',
                                global_batch_size=num_pipelines)
    assert pipeline.per_replica_batch_size(context) == 1
    for features, _ in pipeline.dataset_fn(context):
      seen.extend(n.decode() for n in features[common.IMAGE_NAME].numpy())
  assert sorted(seen) == [r.image_id for r in data[1]]


def test_train_sharding_gives_per_replica_batches(data):
  context = tf.distribute.InputContext(2, 1, 4)
  ds = ip.InputPipeline(file_pattern=data[2], mode='train',
                        global_batch_size=8, crop_size=CROP).dataset_fn(context)
  assert ds.element_spec[0][common.IMAGE].shape[0] == 2


def test_eval_records_equal_tfrecords(data):
  from_files = _take(ip.InputPipeline(records=data[1], mode='eval',
                                      global_batch_size=1).dataset_fn(), 5)
  from_tfr = _take(ip.InputPipeline(file_pattern=data[2], mode='eval',
                                    global_batch_size=1).dataset_fn(), 5)
  key = lambda x: x[0][common.IMAGE_NAME][0]
  from_tfr.sort(key=key)
  tf.nest.map_structure(np.testing.assert_array_equal, from_files, from_tfr)
  assert from_files[0][1][common.GT_PANOPTIC].shape == (1, 32, 64)


def test_eval_pad_size_is_static(data):
  ds = ip.InputPipeline(records=data[1], mode='eval', global_batch_size=2,
                        eval_pad_size=(40, 64), drop_remainder=True
                        ).dataset_fn()
  assert ds.element_spec[1][common.GT_PANOPTIC].shape == (2, 40, 64)
  (_, labels), = _take(ds, 1)
  assert (labels[common.GT_PANOPTIC][:, 32:] == 255000).all()


def test_unlabeled_mode_gives_images_and_ids(data):
  records = cf.find_records(data[0], 'test-fine')
  ds = ip.InputPipeline(records=records, mode='unlabeled',
                        global_batch_size=1).dataset_fn()
  batch, = _take(ds, 1)
  assert set(batch) == {common.IMAGE, common.IMAGE_NAME, common.SEQUENCE_ID}
  assert batch[common.IMAGE_NAME][0] == b'berlin_000000_000019'
  with pytest.raises(ValueError, match='berlin_000000_000019_leftImg8bit.png: '
                     'image without label'):
    ip.InputPipeline(records=records, mode='train')


def test_strong_augment_distorts_images_and_voids_cut_labels_only(data):
  """Same geometry as a plain run; colour and cutout on top, cut pixels void."""
  source = {'records': data[1]}
  plain = _take(_train(source).dataset_fn(), 4)
  strong = _take(_train(source, strong_augment=True).dataset_fn(), 4)
  voided = 0
  for (fp, lp), (fs, ls) in zip(plain, strong):
    assert np.abs(fp[common.IMAGE] - fs[common.IMAGE]).max() > 1.0
    same = lp[common.GT_PANOPTIC] == ls[common.GT_PANOPTIC]
    assert np.all(same | (ls[common.GT_PANOPTIC] == 255 * 1000))
    voided += (~same).sum()
  assert voided > 0
  with pytest.raises(ValueError, match='strong_augment is for mode train'):
    ip.InputPipeline(mode='eval', records=data[1], strong_augment=True)


def test_bad_arguments(data):
  with pytest.raises(ValueError, match='exactly one'):
    ip.InputPipeline(mode='eval')
  with pytest.raises(FileNotFoundError, match='no TFRecord files'):
    ip.InputPipeline(file_pattern=data[2] + '/nothing-*.tfrecord')


def test_jpeg_records_decode_as_in_graph(data, tmp_path):
  """Decoding in Python (to name bad files) gives TensorFlow's exact pixels."""
  record = data[1][0]
  jpeg = str(tmp_path / 'frame.jpg')
  Image.open(record.image_path).save(jpeg, quality=75)
  ds = ip.InputPipeline(records=[dataclasses.replace(record, image_path=jpeg)],
                        mode='eval', global_batch_size=1).dataset_fn()
  (features, _), = _take(ds, 1)
  expected = tf.io.decode_image(tf.io.read_file(jpeg), channels=3).numpy()
  np.testing.assert_array_equal(features[common.IMAGE][0], expected)


@pytest.mark.parametrize('cache_decoded', [False, True])
@pytest.mark.parametrize('bad', ['image_path', 'label_path', 'instance_path'])
def test_a_bad_file_is_named_by_the_pipeline(tmp_path, bad, cache_decoded):
  root = str(tmp_path / 'cityscapes')
  tiny_cityscapes.write_tree(root, sequences=False, splits=('train',))
  records = cf.find_records(root, 'train-fine')
  path = getattr(records[1], bad)
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  ds = _train({'records': records}, cache_decoded=cache_decoded).dataset_fn()
  with pytest.raises(tf.errors.OpError) as e:
    _take(ds, 2 * len(records))
  assert f'ValueError: {path}: ' in str(e.value)


def test_image_and_label_of_different_sizes_fail_with_the_image_id(tmp_path):
  root = str(tmp_path / 'cityscapes')
  tiny_cityscapes.write_tree(root, sequences=False)
  records = cf.find_records(root, 'train-fine')
  with Image.open(records[0].image_path) as image:
    small = image.resize((image.width // 2, image.height // 2))
  small.save(records[0].image_path)
  for mode in ('train', 'eval'):
    pipeline = ip.InputPipeline(records=records[:1], mode=mode,
                                global_batch_size=1, crop_size=CROP)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f'sizes differ.*{records[0].image_id}'):
      _take(pipeline.dataset_fn(), 1)
