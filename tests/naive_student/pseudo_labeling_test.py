"""Tests of `pseudo_labeling`: a random Teacher labels a tiny synthetic video.

What the Student needs of the labels: TTA with one scale is plain inference,
the ego car is void in every frame, a killed or sharded run labels every frame
exactly once, and labels made with other settings are refused.
"""

import functools
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import inference
from official_naive_student.dataloaders import cityscapes_files as cf
from official_naive_student.dataloaders import decode
from official_naive_student.modeling import presets
from official_naive_student.naive_student import ego_car
from official_naive_student.naive_student import label_settings
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import pseudo_label_stage
from official_naive_student.naive_student import pseudo_labeling as pls
from official_naive_student.tasks import panoptic_deeplab as task_lib

INFO = datasets.CITYSCAPES
VOID = INFO.ignore_label * INFO.label_divisor
NUM_FRAMES = 20  # The frames of the `setup` fixture (conftest.py).


def _task():
  return task_lib.PanopticDeepLabTask(model_fn=functools.partial(
      presets.build_panoptic_deeplab, preset='tiny'))


def _labels(output_dir):
  """image id -> decoded panoptic map of a merged pseudo-label folder."""
  annotations = cf.read_panoptic_json(label_folder.panoptic_json_path(output_dir))
  return {k: decode.decode_panoptic_png(png, segments, INFO)
          for k, (png, segments) in annotations.items()}


def _partition_agreement(a, b):
  """Share of pixels in the same segment pairing, whatever the instance numbers.

  Each segment of one map is paired with the segment of the other that covers
  most of it; 1.0 means equal semantics and the same segments.
  """
  pairs, counts = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1,
                            return_counts=True)
  shares = []
  for side in (0, 1):
    best = {}
    for key, count in zip(pairs[side], counts):
      best[key] = max(best.get(key, 0), count)
    shares.append(sum(best.values()))
  same_class = pairs[0] // 1000 == pairs[1] // 1000
  return min(min(shares), counts[same_class].sum()) / a.size


def _agreement(a, b):
  """Share of pixels where two id maps are equal."""
  return float(np.mean(a == b))


# TTA at scale 1 and plain inference run different float paths (softmax
# averaging, resizes of size 1), so ids may differ where two classes or two
# centers tie to rounding: on AMD EPYC, 1 pixel of 8192 did. A real TTA bug
# (a shifted, flipped or rescaled view) moves the outputs by far more than the
# tolerances below and changes far more pixels.
_OUTPUT_ATOL = 1e-4


_MIN_AGREEMENT = 0.995


def test_tta_identity_is_plain_inference_and_ego_car_is_void(setup):
  labels = _labels(setup['full'])
  masks = ego_car.snippet_masks(setup['records'])
  assert len(masks) == 2 and all(m.any() for m in masks.values())
  ego_needed = 0
  for record in setup['records']:
    image = decode.decode_image(record.image_path)[np.newaxis]
    raw = setup['model'](tf.constant(image, tf.float32), training=False)
    via_tta_raw = inference.make_tta_fn((1.0,), False)(
        lambda x: setup['model'](x, training=False),
        tf.constant(image, tf.float32))
    probs = tf.nn.softmax(raw[common.PRED_SEMANTIC_LOGITS]).numpy()
    np.testing.assert_allclose(via_tta_raw[common.PRED_SEMANTIC_PROBS], probs,
                               atol=_OUTPUT_ATOL)
    for key in (common.PRED_CENTER_HEATMAP, common.PRED_OFFSET):
      np.testing.assert_allclose(via_tta_raw[key], raw[key], atol=_OUTPUT_ATOL)
    plain = setup['plain'](image)[common.PRED_PANOPTIC].numpy()[0]
    via_tta = setup['tta_infer'](image)[common.PRED_PANOPTIC].numpy()[0]
    assert _agreement(via_tta // 1000, plain // 1000) >= _MIN_AGREEMENT
    assert _agreement(via_tta, plain) >= _MIN_AGREEMENT
    mask = ego_car.mask_for(record, masks)
    ego_needed += int((plain[mask] != VOID).any())
    label = labels[record.image_id]
    assert (label[mask] == VOID).all(), record.image_id
    expected = ego_car.apply_ego_car_void(plain, mask, VOID)
    assert _partition_agreement(label, expected) >= _MIN_AGREEMENT, (
        record.image_id)
  assert ego_needed > 0  # The Teacher did label the ego car somewhere.


def _build(setup, calls, fail_after=None):
  """build_infer for write_pseudo_labels; the infer raises after n batches."""
  def build():
    calls.append('build')
    def infer(images):
      calls.append('batch')
      if fail_after is not None and calls.count('batch') > fail_after:
        raise RuntimeError('killed')
      return setup['tta_infer'](images)
    return infer
  return build


def _mtimes(output_dir):
  folder = os.path.join(output_dir, label_folder.LABEL_NAME)
  return {n: os.stat(os.path.join(folder, n)).st_mtime_ns
          for n in os.listdir(folder)}


def test_killed_and_sharded_runs_label_every_frame_once(setup):
  out = str(setup['base'] / 'sharded')
  records = setup['records']
  shards = [label_folder.shard_records(records, i, 2) for i in range(2)]
  ids = [r.image_id for s in shards for r in s]
  assert sorted(ids) == sorted(r.image_id for r in records)
  assert len(set(ids)) == NUM_FRAMES
  kwargs = dict(batch_size=2, num_shards=2)
  calls = []
  with pytest.raises(RuntimeError, match='killed'):  # Dies in its 3rd batch.
    pls.write_pseudo_labels(_build(setup, calls, 2), records[::-1], out,
                            shard=0, **kwargs)
  before = _mtimes(out)
  assert len(before) == 4 and not any('.tmp-' in n for n in before)
  own = shards[0][-1].image_id + '_panoptic.png.tmp-1'
  other = shards[1][0].image_id + '_panoptic.png.tmp-1'
  for name in (own, other):  # Leftovers of a writer killed mid-file.
    file_io.atomic_write_text(os.path.join(out, label_folder.LABEL_NAME, name), 'x')
  calls = []
  result = pls.write_pseudo_labels(_build(setup, calls), records, out,
                                   shard=0, **kwargs)
  assert result == {'written': 6, 'skipped': 4, 'complete': True}
  assert calls.count('batch') == 3
  after = _mtimes(out)
  assert {n: after[n] for n in before} == before  # Not redone.
  assert own not in after and other in after
  with pytest.raises(RuntimeError, match=r'shards \[1\] of 2'):
    label_folder.merge_pseudo_labels(out)
  calls = []
  result = pls.write_pseudo_labels(_build(setup, calls), records, out,
                                   shard=1, max_frames=3, **kwargs)
  assert result == {'written': 3, 'skipped': 0, 'complete': False}
  result = pls.write_pseudo_labels(_build(setup, calls), records, out,
                                   shard=1, **kwargs)
  assert result == {'written': 7, 'skipped': 3, 'complete': True}
  assert other not in _mtimes(out)
  calls = []
  result = pls.write_pseudo_labels(_build(setup, calls), records, out,
                                   shard=0, **kwargs)
  assert result['written'] == 0 and not calls  # Nothing left: no model built.
  with pytest.raises(ValueError, match='settings'):
    pls.write_pseudo_labels(_build(setup, calls), records, out, shard=0,
                            batch_size=2, num_shards=3)
  label_folder.merge_pseudo_labels(out)
  with open(label_folder.panoptic_json_path(out)) as f:
    merged = json.load(f)
  with open(label_folder.panoptic_json_path(setup['full'])) as f:
    single = json.load(f)
  assert merged == single
  full, sharded = _labels(setup['full']), _labels(out)
  for image_id, label in full.items():
    np.testing.assert_array_equal(sharded[image_id], label)


def _other_teacher(folder):
  """Another randomly initialized Teacher: the same network, other weights."""
  task = _task()
  model = task.build_model()
  model(tf.zeros([1, *task.input_shape]), training=False)
  return tf.train.Checkpoint(**{common.CKPT_MODEL: model}).save(
      os.path.join(folder, 'ckpt'))


def test_teacher_settings_tell_widths_of_one_preset_apart(tmp_path):
  """A preset at 1/4 width keeps the preset's name; its size tells it apart."""
  sizes = {}
  for width in (1.0, 0.25):
    model = inference.build_model(functools.partial(
        presets.build_panoptic_deeplab, preset='tiny',
        backbone_kwargs={'width_multiplier': width}))
    prefix = tf.train.Checkpoint(**{common.CKPT_MODEL: model}).save(
        str(tmp_path / f'w{width}' / 'ckpt'))
    settings = label_settings.teacher_settings(prefix, model)
    assert settings['network'] == 'tiny'
    sizes[width] = settings['num_parameters']
  assert sizes[0.25] < sizes[1.0]


def test_finished_labels_refuse_another_teacher_until_overwritten(
    setup, tmp_path, capsys):
  out = str(tmp_path / 'labels')
  shutil.copytree(setup['full'], out)
  records, before = setup['records'], _mtimes(out)
  settings = file_io.read_json(os.path.join(out, label_folder.SETTINGS_FILE))
  assert settings['network'] == 'tiny' and settings['precision'] == 'float32'
  assert settings['teacher_checkpoint'] == 'ckpt-0'
  assert str(setup['base']) not in json.dumps(settings)  # No absolute paths.
  assert settings['num_parameters'] == inference.build_model(
      _task().build_model).count_params()
  # The same Teacher moved elsewhere, or another split of the work: reused.
  moved = str(tmp_path / 'moved_teacher')
  shutil.copytree(setup['teacher_dir'], moved)
  assert pls.pseudo_label(moved, out, records, task=_task(), num_shards=3) == out
  # A folder written before num_parameters was recorded is reused too.
  older = str(tmp_path / 'older_labels')
  shutil.copytree(out, older)
  del settings['num_parameters']
  file_io.atomic_write_json(os.path.join(older, label_folder.SETTINGS_FILE),
                            settings)
  assert pls.pseudo_label(moved, older, records, task=_task()) == older
  other = _other_teacher(str(tmp_path / 'other'))
  for teacher, kwargs, keys in (
      (other, {}, 'teacher_checkpoint, teacher_sha256'),
      (moved, {'scales': (0.5, 1.0)}, 'scales'),
      (moved, {'flip': True}, 'flip'),
      (moved, {'records': records[:-1]}, 'num_records, records_sha1')):
    kwargs = {'records': records, **kwargs}
    with pytest.raises(pls.SettingsMismatchError,
                       match=rf'other settings \({keys}\)'):
      pls.pseudo_label(teacher, out, task=_task(), **kwargs)
  mismatch = (r"\(precision\):\n  precision: 'float32' in the folder, "
              r"'mixed_bfloat16' now")
  with pytest.raises(pls.SettingsMismatchError, match=mismatch):
    pls.pseudo_label(moved, out, records, task=_task(),
                     precision='mixed_bfloat16')
  # A Trainer of the same process (a chain's Teacher stage) sets the global
  # policy; labels do not follow it, so a resumed chain labels alike.
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    assert pls.pseudo_label(moved, out, records, task=_task()) == out
  finally:
    keras.mixed_precision.set_global_policy('float32')
  assert _mtimes(out) == before  # Refused before any work.
  bindings = ["PanopticDeepLabTask.model_fn = @build_panoptic_deeplab",
              "build_panoptic_deeplab.preset = 'tiny'",
              "pseudo_label.task = @PanopticDeepLabTask()"]
  argv = sum((['--gin_bindings', b] for b in bindings), [])
  argv += ['--teacher_checkpoint', other, '--output_dir', out,
           '--cityscapes_root', setup['root']]
  assert pseudo_label_stage.main(argv) == 1
  assert 'teacher_sha256' in capsys.readouterr().err
  assert pseudo_label_stage.main(argv + ['--overwrite']) == 0
  assert f'{out}: done' in capsys.readouterr().out
  settings = file_io.read_json(os.path.join(out, label_folder.SETTINGS_FILE))
  assert settings['teacher_sha256'] == label_settings.teacher_fingerprint(other)
  assert file_io.is_done(out) and len(_labels(out)) == NUM_FRAMES
  assert not set(_mtimes(out).items()) & set(before.items())  # All redone.


def test_finished_labels_of_unknown_origin_are_refused(setup, tmp_path):
  out = str(tmp_path / 'labels')
  shutil.copytree(setup['full'], out)
  os.remove(os.path.join(out, label_folder.SETTINGS_FILE))
  with pytest.raises(pls.SettingsMismatchError, match='unknown origin'):
    pls.pseudo_label(setup['teacher_dir'], out, setup['records'], task=_task())


def test_stale_temporaries_are_removed_at_the_next_start(setup, tmp_path):
  """This shard's leftovers go at once; other writers' only once an hour old."""
  out = str(tmp_path / 'labels')
  records = setup['records']
  mine, theirs = (label_folder.shard_records(records, i, 2)[0].image_id for i in (0, 1))
  kwargs = dict(shard=0, num_shards=2, max_frames=0)  # Cleans, labels nothing.
  calls = []
  pls.write_pseudo_labels(_build(setup, calls), records, out, **kwargs)
  names = {
      label_folder.LABEL_NAME: [f'{mine}_panoptic.png.tmp-1-a',
                       f'{theirs}_panoptic.png.tmp-1-b'],
      label_folder.SEGMENTS_DIR: [f'{mine}.json.tmp-1-c', f'{theirs}.json.tmp-1-d'],
      label_folder.SHARDS_DIR: ['shard-00000-of-00002.json.tmp-1-e',
                       'shard-00001-of-00002.json.tmp-1-f'],
      '': ['settings.json.tmp-1', f'{label_folder.LABEL_NAME}.json.tmp-1-g',
           'DONE.tmp-1-h'],
  }
  paths = [os.path.join(out, folder, n) for folder, ns in names.items()
           for n in ns]
  for path in paths:
    file_io.atomic_write_text(path, 'x')
  old = [os.path.join(out, '', f'{label_folder.LABEL_NAME}.json.tmp-1-g'),
         os.path.join(out, label_folder.LABEL_NAME, f'{theirs}_panoptic.png.tmp-1-b')]
  for path in old:
    os.utime(path, (0, 0))  # Untouched since 1970: its writer is gone.
  pls.write_pseudo_labels(_build(setup, calls), records, out, **kwargs)
  assert not calls
  left = {os.path.relpath(p, out) for p in paths if os.path.exists(p)}
  assert left == {f'{label_folder.SEGMENTS_DIR}/{theirs}.json.tmp-1-d',
                  f'{label_folder.SHARDS_DIR}/shard-00001-of-00002.json.tmp-1-f',
                  'settings.json.tmp-1', 'DONE.tmp-1-h'}


def test_confidence_threshold_voids_the_pixels_the_teacher_is_unsure_of(
    setup, tmp_path):
  records = setup['records'][:4]
  confidences = np.stack([
      np.max(setup['tta_infer'](decode.decode_image(r.image_path)[np.newaxis])[
          common.PRED_SEMANTIC_PROBS].numpy()[0], axis=-1) for r in records])
  threshold = float(np.median(confidences))
  out = str(tmp_path / 'confident')
  assert pls.pseudo_label(setup['teacher_dir'], out, records, task=_task(),
                          batch_size=4, confidence_threshold=threshold) == out
  with open(os.path.join(out, label_settings.SETTINGS_FILE)) as f:
    assert json.load(f)['confidence_threshold'] == threshold
  hard, confident = _labels(setup['full']), _labels(out)
  for record, confidence in zip(records, confidences):
    label = confident[record.image_id]
    unsure = confidence < threshold - 1e-4
    sure = confidence > threshold + 1e-4
    assert unsure.mean() > 0.3 and sure.mean() > 0.3
    assert (label[unsure] == VOID).all()
    assert _agreement(label[sure] // 1000,
                      hard[record.image_id][sure] // 1000) >= _MIN_AGREEMENT


def test_class_balanced_labels_use_the_fitted_biases_and_resume_with_them(
    setup, tmp_path, monkeypatch):
  records = setup['records']
  human = cf.find_records(setup['root'], 'train-fine')
  out = str(tmp_path / 'balanced')
  assert pls.pseudo_label(setup['teacher_dir'], out, records, task=_task(),
                          batch_size=4, max_frames=8,
                          class_balance_records=human,
                          class_balance_frames=6) is None
  with open(os.path.join(out, label_settings.SETTINGS_FILE)) as f:
    settings = json.load(f)
  bias = np.asarray(settings['class_log_bias'])
  assert settings['class_balance']['frames'] == 6
  assert bias.shape == (INFO.num_classes,) and np.abs(bias).max() > 0.1

  # The rest of the frames: the stored biases, not a new fit.
  def no_refit(*args, **kwargs):
    raise AssertionError('refitted on resume')

  monkeypatch.setattr(pls, 'sample_pixel_log_probs', no_refit)
  assert pls.pseudo_label(setup['teacher_dir'], out, records, task=_task(),
                          batch_size=4, class_balance_records=human,
                          class_balance_frames=6) == out
  labels, hard = _labels(out), _labels(setup['full'])
  changed = 0
  for record in records:
    probs = setup['tta_infer'](decode.decode_image(record.image_path)[
        np.newaxis])[common.PRED_SEMANTIC_PROBS].numpy()[0]
    balanced = np.argmax(np.log(np.maximum(probs, 1e-12)) + bias, axis=-1)
    label = labels[record.image_id]
    labeled = label != VOID
    assert _agreement(label[labeled] // 1000, balanced[labeled]) >= (
        _MIN_AGREEMENT), record.image_id
    changed += int(_agreement(label // 1000, hard[record.image_id] // 1000)
                   < 0.99)
  assert changed > 0  # The biases did change labels.

  # Other human labels, other target shares: the folder refuses them.
  with pytest.raises(pls.SettingsMismatchError, match='class_balance'):
    pls.pseudo_label(setup['teacher_dir'], out, records, task=_task(),
                     batch_size=4, class_balance_records=human[:1],
                     class_balance_frames=6)


def test_class_confidence_voids_each_class_below_its_fitted_threshold(
    setup, tmp_path, monkeypatch):
  records = setup['records']
  out = str(tmp_path / 'class_confident')
  options = dict(task=_task(), batch_size=4, class_balance_frames=6,
                 class_confidence_quantile=0.5)
  assert pls.pseudo_label(setup['teacher_dir'], out, records, max_frames=8,
                          **options) is None
  with open(os.path.join(out, label_settings.SETTINGS_FILE)) as f:
    settings = json.load(f)
  assert settings['class_confidence'] == {'frames': 6, 'quantile': 0.5}
  assert 'class_log_bias' not in settings
  thresholds = np.asarray(settings['class_confidence_thresholds'])
  assert thresholds.shape == (INFO.num_classes,) and thresholds.max() > 0

  def no_refit(*args, **kwargs):
    raise AssertionError('refitted on resume')

  monkeypatch.setattr(pls, 'sample_pixel_log_probs', no_refit)
  assert pls.pseudo_label(setup['teacher_dir'], out, records, **options) == out
  labels, hard = _labels(out), _labels(setup['full'])
  voided = []
  for record in records:
    probs = setup['tta_infer'](decode.decode_image(record.image_path)[
        np.newaxis])[common.PRED_SEMANTIC_PROBS].numpy()[0]
    needed = thresholds[np.argmax(probs, axis=-1)]
    confidence = np.max(probs, axis=-1)
    # Where two classes nearly tie, batched labeling may take the other one
    # (and its threshold): such pixels are not checked.
    top_two = np.sort(probs, axis=-1)[..., -2:]
    clear = top_two[..., 1] - top_two[..., 0] > 1e-4
    label = labels[record.image_id]
    assert (label[clear & (confidence < needed - 1e-4)] == VOID).all(), (
        record.image_id)
    sure = clear & (confidence > needed + 1e-4)
    assert _agreement(label[sure] // 1000, hard[record.image_id][sure] // 1000
                      ) >= _MIN_AGREEMENT, record.image_id
    voided.append(np.mean(confidence < needed))
  # The median of each class's confidences on 6 of the 20 frames: about half
  # of all pixels are void.
  assert 0.3 < np.mean(voided) < 0.7

  with pytest.raises(pls.SettingsMismatchError, match='class_confidence'):
    pls.pseudo_label(setup['teacher_dir'], out, records,
                     **{**options, 'class_confidence_quantile': 0.2})
