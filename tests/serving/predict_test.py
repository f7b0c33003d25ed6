"""predict.py's library on two tiny images, and the PNGs it writes."""

import os

import numpy as np
import pytest
from PIL import Image
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student import panoptic_rgb
from official_naive_student.serving import predict_lib
from official_naive_student.serving import prediction_pngs

INFO = datasets.CITYSCAPES


@pytest.fixture(scope='module')
def inputs(tmp_path_factory, make_images):
  folder = tmp_path_factory.mktemp('inputs')
  images = make_images(2, 17, 25, seed=5)
  Image.fromarray(images[0]).save(folder / 'a.png')
  Image.fromarray(images[1]).save(folder / 'b.png')
  (folder / 'notes.txt').write_text('not an image')
  return str(folder), images


def test_list_images(inputs, tmp_path):
  folder, _ = inputs
  names = ['a.png', 'b.png']
  assert [os.path.basename(p) for p in predict_lib.list_images(folder)] == names
  assert predict_lib.list_images(os.path.join(folder, 'b.png')) == [
      os.path.join(folder, 'b.png')]
  assert len(predict_lib.list_images(os.path.join(folder, '*.png'))) == 2
  with pytest.raises(FileNotFoundError, match='no .png/.jpg/.jpeg images'):
    predict_lib.list_images(str(tmp_path))


def test_checkpoint_and_saved_model_write_the_same_pngs(
    inputs, exported, make_task, tmp_path):
  folder, images = inputs
  paths = predict_lib.list_images(folder)
  served, info = predict_lib.saved_model_predictor(exported['export_dir'])
  assert info == INFO  # Read back from the export's assets.extra.
  from_export = predict_lib.predict_files(served, paths, str(tmp_path / 'sm'),
                                          info)
  evaluated, _ = predict_lib.checkpoint_predictor(make_task(),
                                                  exported['model_dir'])
  from_ckpt = predict_lib.predict_files(evaluated, paths,
                                        str(tmp_path / 'ckpt'), INFO)
  assert len(from_export) == 2
  for a, b in zip(from_export, from_ckpt):
    assert sorted(a) == sorted(prediction_pngs.SUFFIXES)
    for suffix in prediction_pngs.SUFFIXES:
      np.testing.assert_array_equal(np.asarray(Image.open(a[suffix])),
                                    np.asarray(Image.open(b[suffix])))
  prediction = served(images[0])
  rgb = np.asarray(Image.open(from_export[0]['panoptic']))
  instance_ids = np.asarray(Image.open(from_export[0]['instanceIds']))
  np.testing.assert_array_equal(panoptic_rgb.rgb_to_ids(rgb),
                                instance_ids)
  train_ids = np.asarray(Image.open(from_export[0]['trainIds']))
  np.testing.assert_array_equal(train_ids, prediction[common.PRED_SEMANTIC])
  assert np.asarray(Image.open(from_export[0]['overlay'])).shape == (17, 25, 3)


def test_pngs_of_a_hand_made_prediction(tmp_path):
  # Road (train 0 -> label 7), car (train 13 -> label 26) instances 1 and 2,
  # a crowd car (instance 0) and void.
  panoptic = np.array([[0, 0, 13001, 13001],
                       [0, 13000, 13002, 13002],
                       [255000, 255000, 0, 0]], np.int32)
  semantic = panoptic // 1000
  image = np.full((3, 4, 3), 100, np.uint8)
  paths = prediction_pngs.write_prediction(
      str(tmp_path), 'x', image,
      {common.PRED_PANOPTIC: panoptic, common.PRED_SEMANTIC: semantic}, INFO)
  ids = np.asarray(Image.open(paths['instanceIds']))
  np.testing.assert_array_equal(ids, [[7, 7, 26000, 26000],
                                      [7, 26, 26001, 26001],
                                      [0, 0, 7, 7]])
  rgb = np.asarray(Image.open(paths['panoptic']))
  np.testing.assert_array_equal(panoptic_rgb.rgb_to_ids(rgb), ids)
  np.testing.assert_array_equal(np.asarray(Image.open(paths['labelIds'])),
                                [[7, 7, 26, 26], [7, 26, 26, 26], [0, 0, 7, 7]])
  overlay = np.asarray(Image.open(paths['overlay']))
  # Instance 1 meets instance 2 below it: both outlined (white); road is not.
  assert (overlay[0, 2] == 255).all() and (overlay[1, 3] == 255).all()
  road = (0.5 * 100 + 0.5 * np.asarray(INFO.colormap[0])).round()
  np.testing.assert_array_equal(overlay[0, 0], road)
  with pytest.raises(ValueError, match='differ'):
    prediction_pngs.write_prediction(
        str(tmp_path), 'y', image[:2],
        {common.PRED_PANOPTIC: panoptic, common.PRED_SEMANTIC: semantic}, INFO)


def test_bad_images_are_reported_by_path_and_the_rest_written(
    bad_inputs, tmp_path):
  folder, bad = bad_inputs
  seen = []

  def predictor(image):  # Refuses f.png as the export does.
    seen.append(image.shape)
    if image.shape[0] == 1500:
      raise tf.errors.InvalidArgumentError(
          None, None, 'assertion failed: [images is 1500x1500 (height x '
          'width); this export takes at most 2097152 pixels]')
    return {common.PRED_PANOPTIC: np.zeros(image.shape[:2], np.int32),
            common.PRED_SEMANTIC: np.zeros(image.shape[:2], np.int32)}

  paths = predict_lib.list_images(str(folder))
  with pytest.raises(predict_lib.FailedImagesError) as raised:
    predict_lib.predict_files(predictor, paths, str(tmp_path / 'out'), INFO)
  assert len(seen) == 3  # a.png, f.png and e.png, after the failures too.
  assert [os.path.basename(w['panoptic']) for w in raised.value.written] == [
      'a_panoptic.png', 'e_panoptic.png']
  assert [p for p, _ in raised.value.failures] == sorted(bad)
  lines = str(raised.value).splitlines()
  assert lines[0] == '4 of 6 images failed (the others were written):'
  for line, (path, reason) in zip(lines[1:], sorted(bad.items())):
    assert line.startswith(f'{path}: ') and reason in line, line


def test_predict_cli_skips_bad_images_and_exits_non_zero(exported,
                                                         run_on_bad_inputs):
  run_on_bad_inputs('predict.py', f'--saved_model={exported["export_dir"]}')
