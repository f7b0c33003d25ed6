"""Tests for post_processing/panoptic.py on hand-made maps with known answers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from official_naive_student import common
from official_naive_student.post_processing import panoptic

DIV = 256
VOID = 255

# DeepLab2's `test_gets_panoptic_predictions_with_score` heatmap. With threshold 0
# and a 3x3 NMS, 0.8 is suppressed by 1.0 and 0.1, 0.2 by 0.7: centers (0, 0) and
# (3, 4). With zero offsets each pixel joins the nearer center; (4, 0) is 4 px from
# (0, 0) and sqrt(17) px from (3, 4), so it joins instance 1.
HEATMAP_5X5 = np.array([
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [0.8, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.1, 0.7],
    [0.0, 0.0, 0.0, 0.0, 0.2],
], np.float32)[..., np.newaxis]
INSTANCES_5X5 = np.array([
    [1, 1, 1, 1, 2],
    [1, 1, 1, 2, 2],
    [1, 1, 2, 2, 2],
    [1, 2, 2, 2, 2],
    [1, 2, 2, 2, 2],
], np.int32)


def _centers(heatmap, **kwargs):
  centers, scores = panoptic.find_instance_centers(heatmap, **kwargs)
  return centers.numpy(), scores.numpy()


def test_centers_nms_threshold_and_padding():
  centers, scores = _centers(HEATMAP_5X5, threshold=0.0, nms_kernel=3,
                             keep_k=4)
  np.testing.assert_array_equal(centers, [[0, 0], [3, 4], [-1, -1], [-1, -1]])
  np.testing.assert_allclose(scores, [1.0, 0.7, 0.0, 0.0])
  # 0.7 is not above the threshold 0.7 (strict, as DeepLab2).
  centers, scores = _centers(HEATMAP_5X5, threshold=0.7, nms_kernel=3,
                             keep_k=2)
  np.testing.assert_array_equal(centers, [[0, 0], [-1, -1]])
  np.testing.assert_allclose(scores, [1.0, 0.0])
  # A 1x1 window suppresses nothing: every positive pixel is a center.
  centers, _ = _centers(HEATMAP_5X5, threshold=0.0, nms_kernel=1, keep_k=8)
  np.testing.assert_array_equal(
      centers[:5], [[0, 0], [1, 0], [3, 3], [3, 4], [4, 4]])


def test_centers_top_k_keeps_best_in_raster_order_and_plateaus():
  heat = np.zeros((8, 8, 1), np.float32)
  heat[0, 7] = 0.3  # Weakest of three separated peaks.
  heat[4, 6] = 0.9
  heat[7, 0] = 0.5
  centers, scores = _centers(heat, threshold=0.1, nms_kernel=3, keep_k=2)
  np.testing.assert_array_equal(centers, [[4, 6], [7, 0]])
  np.testing.assert_allclose(scores, [0.9, 0.5])
  # Two equal neighbours are both local maxima (DeepLab2 keeps plateaus).
  heat = np.zeros((4, 4, 1), np.float32)
  heat[1, 1] = heat[1, 2] = 0.6
  centers, _ = _centers(heat, threshold=0.1, nms_kernel=3, keep_k=3)
  np.testing.assert_array_equal(centers, [[1, 1], [1, 2], [-1, -1]])


def test_centers_rejects_bad_arguments():
  with pytest.raises(ValueError):
    panoptic.find_instance_centers(HEATMAP_5X5, nms_kernel=4)
  with pytest.raises(ValueError):
    panoptic.find_instance_centers(HEATMAP_5X5, keep_k=0)


def test_group_pixels_zero_offsets_ties_and_padding():
  centers = tf.constant([[0, 0], [-1, -1], [3, 4], [-1, -1]])
  instance = panoptic.group_pixels_to_centers(centers, tf.zeros([5, 5, 2]))
  # Padding row 1 is skipped; the second valid center keeps its slot id 3.
  np.testing.assert_array_equal(instance, np.where(INSTANCES_5X5 == 2, 3, 1))
  # Pixel (0, 1) is 1 px from both (0, 0) and (0, 2): the lower index wins.
  instance = panoptic.group_pixels_to_centers(
      tf.constant([[0, 0], [0, 2]]), tf.zeros([1, 3, 2]))
  np.testing.assert_array_equal(instance, [[1, 1, 2]])


def test_group_pixels_follows_offsets():
  # Every pixel of a 4x4 image points at (3, 3) except row 0, which points at
  # (0, 0) with a small error; centers are (0, 0) and (3, 3).
  yy, xx = np.mgrid[0:4, 0:4].astype(np.float32)
  offsets = np.stack([3.0 - yy, 3.0 - xx], axis=-1)
  offsets[0] = np.stack([0.4 - yy[0], 0.3 - xx[0]], axis=-1)
  instance = panoptic.group_pixels_to_centers(
      tf.constant([[0, 0], [3, 3]]), offsets)
  np.testing.assert_array_equal(
      instance, [[1, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2], [2, 2, 2, 2]])


def test_group_pixels_without_centers_is_zero():
  instance = panoptic.group_pixels_to_centers(
      tf.fill([3, 2], -1), tf.zeros([4, 4, 2]))
  np.testing.assert_array_equal(instance, np.zeros((4, 4)))


def test_merge_deeplab2_worked_example():
  # DeepLab2's `test_merge_semantic_and_instance_maps_with_a_simple_example`:
  # instances 1 and 2 are class 2 (ids 1, 2); instance 3 is the first of class 3
  # (id 1). Stuff class 1 covers 2 <= 3 pixels and becomes void; class 0 stays.
  semantic = [[0, 0, 0, 0], [0, 1, 1, 0], [0, 2, 2, 0], [2, 2, 3, 3]]
  instance = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [2, 2, 3, 3]]
  v = VOID * DIV
  expected = [[0, 0, 0, 0], [0, v, v, 0], [0, 2 * DIV + 1, 2 * DIV + 1, 0],
              [2 * DIV + 2, 2 * DIV + 2, 3 * DIV + 1, 3 * DIV + 1]]
  panoptic_map = panoptic.merge_semantic_and_instance(
      tf.constant(semantic), tf.constant(instance), (2, 3), DIV, 3, VOID)
  np.testing.assert_array_equal(panoptic_map, expected)
  # Static histogram sizes (the XLA path) give the same answer.
  panoptic_map = panoptic.merge_semantic_and_instance(
      tf.constant(semantic), tf.constant(instance), (2, 3), DIV, 3, VOID,
      num_classes=5, max_instance_id=7)
  np.testing.assert_array_equal(panoptic_map, expected)


def test_merge_majority_vote_and_tie_break():
  # Instance 1: three class-3 pixels, one class-2 pixel -> all class 3. Instance
  # 2: one pixel each of classes 2 and 3 -> tie goes to the smaller class 2.
  # Stuff class 0 is ignored by the vote even inside instance 1.
  semantic = [[3, 3, 3, 2], [0, 0, 2, 3]]
  instance = [[1, 1, 1, 1], [1, 1, 2, 2]]
  panoptic_map = panoptic.merge_semantic_and_instance(
      tf.constant(semantic), tf.constant(instance), (2, 3), DIV, 0, VOID)
  a, b = 3 * DIV + 1, 2 * DIV + 1
  np.testing.assert_array_equal(panoptic_map, [[a, a, a, a], [0, 0, b, b]])


def test_merge_stuff_area_limit_boundary():
  semantic = tf.constant([[0, 0, 1, 1, 1]])
  instance = tf.zeros([1, 5], tf.int32)
  # Area <= limit is removed (DeepLab2's kernel): class 0 (2 px) at limit 2.
  out = panoptic.merge_semantic_and_instance(semantic, instance, (), DIV, 2,
                                             VOID)
  np.testing.assert_array_equal(out, [[VOID * DIV] * 2 + [DIV] * 3])
  # Limit 0 disables the filter.
  out = panoptic.merge_semantic_and_instance(semantic, instance, (), DIV, 0,
                                             VOID)
  np.testing.assert_array_equal(out, [[0, 0, DIV, DIV, DIV]])


def test_instance_scores_are_mean_class_probability_times_center_score():
  # Instance 1 = pixels 0..2 voted class 1 with probs 0.9, 0.6, 0.3 -> 0.6;
  # instance 2 = pixel 3, class 2, prob 0.5; pixel 4 is stuff. Slot 3 is empty.
  probs = np.array([[[0.1, 0.9, 0.0], [0.4, 0.6, 0.0], [0.1, 0.3, 0.6],
                     [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]], np.float32)
  instance = tf.constant([[1, 1, 1, 2, 0]])
  panoptic_map = tf.constant([[DIV + 1, DIV + 1, DIV + 1, 2 * DIV + 1, 0]])
  center_scores = tf.constant([0.5, 0.8, 0.9])
  scores = panoptic.compute_instance_scores(probs, instance, panoptic_map,
                                            center_scores, DIV)
  np.testing.assert_allclose(scores, [0.3, 0.4, 0.0], atol=1e-6)
  scores = panoptic.compute_instance_scores(
      np.log(probs + 1e-12) + 3.0, instance, panoptic_map, center_scores, DIV,
      from_logits=True)
  np.testing.assert_allclose(scores, [0.3, 0.4, 0.0], atol=1e-5)


def test_scaled_stuff_area_limit():
  assert panoptic.scaled_stuff_area_limit(1024, 2048) == 4096
  assert panoptic.scaled_stuff_area_limit(512, 1024) == 1024
  assert panoptic.scaled_stuff_area_limit(1025, 2049) == 4102
  assert int(panoptic.scaled_stuff_area_limit(tf.constant(512), 1024)) == 1024


def _raw_5x5(num_classes=3):
  """DeepLab2's 5x5 case: one class everywhere (class 1), all classes things."""
  logits = np.zeros((1, 5, 5, num_classes), np.float32)
  logits[..., 1] = np.log(4.0)  # softmax: class 1 has p = 4 / (4 + 2) = 2/3.
  return logits, HEATMAP_5X5[np.newaxis], np.zeros((1, 5, 5, 2), np.float32)


KWARGS = dict(thing_ids=(0, 1, 2), label_divisor=DIV, ignore_label=VOID,
              center_threshold=0.0, nms_kernel=3, keep_k=3,
              stuff_area_limit=16, stuff_area_reference=None)


def _check_5x5(out):
  np.testing.assert_array_equal(out[common.PRED_SEMANTIC], np.ones((1, 5, 5)))
  np.testing.assert_array_equal(out[common.PRED_INSTANCE], [INSTANCES_5X5])
  np.testing.assert_array_equal(out[common.PRED_PANOPTIC],
                                [DIV + INSTANCES_5X5])
  np.testing.assert_array_equal(out[common.PRED_CENTER_POINTS],
                                [[[0, 0], [3, 4], [-1, -1]]])
  np.testing.assert_allclose(out[common.PRED_INSTANCE_SCORES],
                             [[2 / 3 * 1.0, 2 / 3 * 0.7, 0.0]], rtol=1e-5)


def test_post_process_end_to_end():
  _check_5x5(panoptic.panoptic_deeplab_post_process(*_raw_5x5(), **KWARGS))
  logits, heat, offsets = _raw_5x5()
  probs = tf.nn.softmax(logits)
  _check_5x5(panoptic.panoptic_deeplab_post_process(
      probs, heat, offsets, from_logits=False, **KWARGS))


def test_post_process_stuff_and_batch():
  # Image 0: class 0 (stuff) everywhere -> one stuff segment, no instance.
  # Image 1: the 5x5 case. Class 0 is stuff, 1 and 2 are things.
  logits, heat, offsets = _raw_5x5()
  stuff = np.zeros_like(logits)
  stuff[..., 0] = 5.0
  out = panoptic.panoptic_deeplab_post_process(
      np.concatenate([stuff, logits]), np.concatenate([heat, heat]),
      np.concatenate([offsets, offsets]),
      **dict(KWARGS, thing_ids=(1, 2), stuff_area_limit=0))
  np.testing.assert_array_equal(out[common.PRED_PANOPTIC][0], np.zeros((5, 5)))
  np.testing.assert_array_equal(out[common.PRED_INSTANCE][0], np.zeros((5, 5)))
  np.testing.assert_allclose(out[common.PRED_INSTANCE_SCORES][0], [0, 0, 0])
  np.testing.assert_array_equal(out[common.PRED_PANOPTIC][1],
                                DIV + INSTANCES_5X5)
  # The scaled limit (4096 at 1024x2048 -> 0.05 px here) rounds to 0: kept.
  out = panoptic.panoptic_deeplab_post_process(
      stuff, heat, offsets, **dict(KWARGS, thing_ids=(1, 2),
                                   stuff_area_limit=4096,
                                   stuff_area_reference=(1024, 2048)))
  np.testing.assert_array_equal(out[common.PRED_PANOPTIC][0], np.zeros((5, 5)))


def test_post_process_without_thing_classes_is_semantic_times_divisor():
  """CamVid: no thing ids and no stuff removal; centers found group nothing."""
  logits, heat, offsets = _raw_5x5()
  out = panoptic.panoptic_deeplab_post_process(
      logits, heat, offsets, **dict(KWARGS, thing_ids=(), stuff_area_limit=0))
  semantic = np.argmax(logits, axis=-1)
  np.testing.assert_array_equal(out[common.PRED_SEMANTIC], semantic)
  np.testing.assert_array_equal(out[common.PRED_PANOPTIC], semantic * DIV)
  np.testing.assert_array_equal(out[common.PRED_INSTANCE], 0)
  np.testing.assert_array_equal(out[common.PRED_INSTANCE_SCORES], 0.0)


@pytest.mark.parametrize('jit_compile', [False, True])
def test_post_process_in_tf_function_with_unknown_size(jit_compile):
  @tf.function(jit_compile=jit_compile, input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.float32),
      tf.TensorSpec([None, None, None, 1], tf.float32),
      tf.TensorSpec([None, None, None, 2], tf.float32)])
  def run(semantic, heat, offsets):
    return panoptic.panoptic_deeplab_post_process(
        semantic, heat, offsets, **dict(KWARGS, stuff_area_reference=(5, 5)))

  _check_5x5(run(*_raw_5x5()))


def test_layer_binds_arguments_and_round_trips():
  layer = panoptic.PanopticDeepLabPostProcessor(
      **{k: v for k, v in KWARGS.items()})
  logits, heat, offsets = _raw_5x5()
  _check_5x5(layer({common.PRED_SEMANTIC_LOGITS: logits,
                    common.PRED_CENTER_HEATMAP: heat,
                    common.PRED_OFFSET: offsets}))
  clone = panoptic.PanopticDeepLabPostProcessor.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  _check_5x5(clone({common.PRED_SEMANTIC_PROBS: tf.nn.softmax(logits),
                    common.PRED_CENTER_HEATMAP: heat,
                    common.PRED_OFFSET: offsets}))
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(layer))
  assert restored.get_config() == layer.get_config()


def test_exports_to_saved_model(tmp_path):
  module = tf.Module()
  module.run = tf.function(
      lambda s, c, o: panoptic.panoptic_deeplab_post_process(s, c, o, **KWARGS),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                       tf.TensorSpec([None, None, None, 1], tf.float32),
                       tf.TensorSpec([None, None, None, 2], tf.float32)])
  tf.saved_model.save(module, str(tmp_path))
  _check_5x5(tf.saved_model.load(str(tmp_path)).run(*_raw_5x5()))
