"""The exported SavedModel: layout, signatures, labels equal to eval, clear errors."""

import io
import json
import os
import sys
import textwrap

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import inference
from official_naive_student.serving import export_lib
from official_naive_student.serving import export_module

# Runs with only TensorFlow importable: no project code on the path.
_FRESH_PROCESS = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    saved_model, images_path, out_path = sys.argv[1:]
    images = np.load(images_path)
    model = tf.saved_model.load(saved_model)
    encoded = tf.constant([tf.io.encode_png(i).numpy() for i in images])
    by_bytes = model.signatures['serving_default'](encoded_images=encoded)
    by_pixels = model.signatures['serve_images'](images=tf.constant(images))
    np.savez(out_path, **{f'bytes_{k}': v.numpy() for k, v in by_bytes.items()},
             **{f'pixels_{k}': v.numpy() for k, v in by_pixels.items()})
    print(json.dumps(sorted(m for m in sys.modules
                            if m.startswith('official_naive_student'))))
''')


def _eval_path(restored, images, tta_fn=None):
  task, model = restored
  infer = inference.make_inference_fn(model, task.build_post_processor(), tta_fn)
  return {k: v.numpy() for k, v in infer(tf.constant(images, tf.float32)).items()}


@pytest.fixture(scope='module')
def loaded(exported):
  return tf.saved_model.load(exported['saved_model'])


def test_layout_is_what_tf_serving_watches(exported):
  export_dir = exported['export_dir']
  assert os.listdir(export_dir) == ['7']  # No temporary folder left behind.
  assert tf.saved_model.contains_saved_model(exported['saved_model'])
  config = export_lib.read_export_config(exported['saved_model'])
  assert config['dataset']['name'] == 'cityscapes'
  assert config['input_size'] is None and config['tta_scales'] == [1.0]
  assert config['max_pixels'] == 1024 * 2048
  info = export_lib.dataset_info_from_config(config)
  assert info.thing_train_ids == (11, 12, 13, 14, 15, 16, 17, 18)


def test_existing_version_is_not_replaced(exported):
  module = tf.Module()
  with pytest.raises(FileExistsError, match='--version'):
    export_lib.save_module(module, exported['export_dir'], version=7)


def test_fresh_process_runs_both_signatures_as_evaluation(
    exported, restored, make_images, run_python, tmp_path):
  images = make_images()
  np.save(tmp_path / 'images.npy', images)
  script = tmp_path / 'fresh.py'
  script.write_text(_FRESH_PROCESS)
  result = run_python([str(script), exported['saved_model'],
                       str(tmp_path / 'images.npy'), str(tmp_path / 'out.npz')],
                      cwd=str(tmp_path), env={'PYTHONPATH': ''})
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.strip().splitlines()[-1]) == []
  served = dict(np.load(tmp_path / 'out.npz'))
  expected = _eval_path(restored, images)
  for prefix in ('bytes_', 'pixels_'):
    assert sorted(k[len(prefix):] for k in served if k.startswith(prefix)) == (
        sorted(export_module.OUTPUT_KEYS))
    for key in export_module.OUTPUT_KEYS:
      np.testing.assert_array_equal(served[prefix + key], expected[key],
                                    err_msg=prefix + key)
  panoptic = served['pixels_panoptic']
  assert panoptic.dtype == np.int32 and panoptic.shape == (2, 33, 49)
  assert served['pixels_instance_scores'].dtype == np.float32
  # A random model still predicts several segments: the comparison is not
  # between two constant maps.
  assert len(np.unique(panoptic)) > 3


def test_saved_model_cli_lists_signatures_and_dtypes(exported, run_python):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  result = run_python([cli, 'show', '--all', '--dir', exported['saved_model']])
  assert result.returncode == 0, result.stderr[-3000:]
  text = result.stdout
  blocks = {name: text.split(f"signature_def['{name}']")[1].split(
      'signature_def[')[0] for name in ('serving_default', 'serve_images')}
  assert "inputs['encoded_images'] tensor_info:\n        dtype: DT_STRING" in (
      blocks['serving_default'])
  assert "inputs['images'] tensor_info:\n        dtype: DT_UINT8" in (
      blocks['serve_images'])
  for block in blocks.values():
    for name, dtype in (('panoptic', 'DT_INT32'), ('semantic', 'DT_INT32'),
                        ('instance', 'DT_INT32'),
                        ('instance_scores', 'DT_FLOAT')):
      assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}" in block


@pytest.mark.parametrize('signature,inputs,message', [
    ('serving_default', {'encoded_images': tf.constant([b'not an image'])},
     r'encoded_images\[0\] is not a PNG or JPEG image'),
    ('serving_default', {'encoded_images': tf.constant(b'\x89PNG\r\n\x1a\n')},
     'encoded_images must be a 1-D batch'),
    ('serving_default', {'encoded_images': tf.constant([], tf.string)},
     'encoded_images must be a 1-D batch of at least one'),
    ('serve_images', {'images': tf.zeros([33, 49, 3], tf.uint8)},
     r'images must be uint8 \[batch > 0, height > 0, width > 0, 3\].*'
     r'got shape \[33 49 3\]'),
    ('serve_images', {'images': tf.zeros([1, 0, 49, 3], tf.uint8)},
     r'got shape \[1 0 49 3\]'),
    ('serve_images', {'images': tf.zeros([1, 8, 8, 4], tf.uint8)},
     r'got shape \[1 8 8 4\]'),
    ('serve_images', {'images': tf.zeros([1, 8, 8, 3], tf.float32)},
     'expected to be a uint8 tensor but is a float tensor'),
    ('serving_default', {'encoded_images': tf.constant([1.0])},
     'expected to be a string tensor but is a float tensor'),
])
def test_wrong_inputs_give_clear_errors(loaded, signature, inputs, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded.signatures[signature](**inputs)


def test_truncated_png_is_named_by_its_index(loaded, make_images):
  images = make_images(3, 9, 9)
  encoded = [tf.io.encode_png(i).numpy() for i in images]
  padded = encoded[0] + b'\0' * 100  # Bytes after IEND: still decodes.
  assert loaded.signatures['serving_default'](
      encoded_images=tf.constant([padded, encoded[1]]))['panoptic'].shape == (
          2, 9, 9)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'encoded_images\[2\] is a truncated PNG'):
    loaded.signatures['serving_default'](encoded_images=tf.constant(
        [encoded[0], encoded[1], encoded[2][:len(encoded[2]) - 20]]))


def test_batch_of_different_sizes_is_rejected(loaded, make_images):
  small, large = make_images(1, 9, 9)[0], make_images(1, 12, 9)[0]
  encoded = tf.constant([tf.io.encode_png(small).numpy(),
                         tf.io.encode_jpeg(large).numpy()])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'encoded_images\[1\] is \[12 9\] but the first '
                     r'image is \[9 9\]'):
    loaded.signatures['serving_default'](encoded_images=encoded)


def test_fixed_size_and_tta_compute_what_eval_computes(restored, make_images):
  """Padding to --input_size is evaluation's eval_pad_size; TTA is eval's TTA."""
  task, model = restored
  images = make_images(1, 21, 30)
  tta_fn = inference.make_tta_fn((1.0,), flip=True, plain_at_identity=True)
  module = export_module.PanopticExportModule(
      model, task.build_post_processor(), input_size=(33, 49), tta_flip=True,
      include_semantic_probs=True)
  served = {k: v.numpy() for k, v in module.serve_images(images).items()}
  padded = np.pad(images.astype(np.float32), [[0, 0], [0, 12], [0, 19], [0, 0]],
                  constant_values=127.5)
  expected = _eval_path(restored, padded, tta_fn)
  for key in (common.PRED_PANOPTIC, common.PRED_SEMANTIC,
              common.PRED_INSTANCE, common.PRED_SEMANTIC_PROBS):
    np.testing.assert_array_equal(served[key], expected[key][:, :21, :30],
                                  err_msg=key)
  np.testing.assert_array_equal(served[common.PRED_INSTANCE_SCORES],
                                expected[common.PRED_INSTANCE_SCORES])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='larger than the exported input size 33x49'):
    module.serve_images(make_images(1, 34, 20))


def _encode(height, width, image_format):
  """A constant image: a file of a few KB that decodes to height x width."""
  buffer = io.BytesIO()
  Image.new('RGB', (width, height), (90, 120, 30)).save(buffer,
                                                          format=image_format)
  return buffer.getvalue()


def _png_claiming(height, width):
  """A 1x1 PNG whose IHDR claims height x width (no decoder would accept it)."""
  data = bytearray(_encode(1, 1, 'PNG'))
  data[16:24] = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
  return bytes(data)


@pytest.mark.parametrize('encoded', [
    _encode(1500, 1500, 'PNG'), _encode(1500, 1500, 'JPEG'),
    _png_claiming(1500, 1500)], ids=['png', 'jpeg', 'png_header_only'])
def test_over_budget_images_are_refused_before_decoding(loaded, encoded):
  """1500x1500 > 1024x2048 pixels, the default budget without TTA.

  The forged PNG is only a header: refusing it with the budget message, not
  as invalid PNG data, shows the size is read before decoding.
  """
  small = tf.io.encode_png(tf.zeros([9, 9, 3], tf.uint8))
  with pytest.raises(
      tf.errors.InvalidArgumentError,
      match=r'encoded_images\[1\] is 1500x1500 \(height x width\); this '
      r'export takes at most 2097152 pixels per image \(a budget of 2097152 '
      r'pixels at the largest TTA scale 1\).*--max_pixels'):
    loaded.signatures['serving_default'](
        encoded_images=tf.stack([small, tf.constant(encoded)]))


def test_over_budget_pixels_are_refused(loaded):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'images is 1500x1500 \(height x width\); this '
                     r'export takes at most 2097152 pixels'):
    loaded.signatures['serve_images'](images=tf.zeros([1, 1500, 1500, 3],
                                                      tf.uint8))


def test_budget_counts_pixels_at_the_largest_tta_scale(restored, make_images):
  task, model = restored
  assert export_module.default_max_pixels((0.5, 1.0, 1.5)) == (
      1024 * 2048 * 9 // 4)
  assert export_module.default_max_pixels((1.0,), (33, 49)) == 33 * 49
  module = export_module.PanopticExportModule(
      model, task.build_post_processor(), tta_scales=(0.5, 2.0),
      max_pixels=4 * 21 * 30)
  images = make_images(1, 21, 30)
  encoded = tf.io.encode_png(images[0])[None]
  assert module.serve_images(images)['panoptic'].shape == (1, 21, 30)
  assert module.serve_encoded_images(encoded)['panoptic'].shape == (1, 21, 30)
  message = (r'is 21x31 \(height x width\); this export takes at most 630 '
             r'pixels per image \(a budget of 2520 pixels at the largest TTA '
             r'scale 2\)')
  with pytest.raises(tf.errors.InvalidArgumentError, match='images ' + message):
    module.serve_images(make_images(1, 21, 31))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'encoded_images\[0\] ' + message):
    module.serve_encoded_images(
        tf.io.encode_jpeg(make_images(1, 21, 31)[0])[None])
  unlimited = export_module.PanopticExportModule(
      model, task.build_post_processor(), max_pixels=0)
  assert unlimited.serve_images(make_images(1, 21, 31))['panoptic'].shape == (
      1, 21, 31)
