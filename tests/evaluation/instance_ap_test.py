"""InstanceAP: the official curve, its ignore rules, and equality with the evaluator."""

import numpy as np
import pytest

from official_naive_student import datasets
from official_naive_student.evaluation import instance_ap

DS = datasets.CITYSCAPES


def test_average_precision_worked_example():
  # Sorted by score: 0.9 hit, 0.8 false positive, 0.7 hit; one gt never found.
  # (recall, precision) at thresholds 0.7, 0.8, 0.9 and the extra point:
  # (2/3, 2/3), (1/3, 1/2), (1/3, 1), (0, 1); steps of width 1/6 each.
  ap = instance_ap.average_precision(np.array([1., 0., 1.]),
                                     np.array([0.9, 0.8, 0.7]), 1)
  assert ap == pytest.approx((2 / 3 + 1 / 2 + 1 + 1) / 6)


def _frame():
  gt = np.full((20, 20), 7)                # road
  gt[0:10, 0:10] = 26000                   # car, 100 px
  gt[10:15, 0:5] = 26001                   # small car, 25 px: ignored
  gt[10:20, 10:20] = 26                    # car group
  gt[0:10, 10:20] = 0                      # void
  return gt


def test_small_group_and_void_predictions_are_ignored():
  gt = _frame()
  pred = np.zeros_like(gt)
  pred[0:10, 0:10] = 1                     # exact hit
  pred[10:15, 0:5] = 2                     # on the small car
  pred[10:20, 12:20] = 3                   # mostly on the group
  pred[2:10, 10:20] = 4                    # mostly on void
  metric = instance_ap.InstanceAP(DS)
  metric.add_matches(instance_ap.match_instance_map(
      gt, pred, [26, 26, 26, 26], [0.9, 0.95, 0.99, 0.98]))
  result = metric.result()
  assert result['AP'] == pytest.approx(100)
  assert result['per_class']['person'] is None  # no gt: leaves the mean


def test_false_positive_on_road_counts():
  gt = _frame()
  pred = np.zeros_like(gt)
  pred[0:10, 0:10] = 1
  pred[15:20, 0:10] = 2                    # on road: a false positive
  metric = instance_ap.InstanceAP(DS)
  metric.update_masks(gt, [pred == 1, pred == 2], [26, 26], [0.5, 0.9])
  # Curve: score 0.5 -> (r 1, p 1/2), 0.9 -> (r 0, p 0), extra (0, 1). The
  # official step widths are half the recall differences two points apart:
  # (1 - 0) / 2, (1 - 0) / 2, 0 -> AP = 1/2 * 1/2 + 0 * 1/2 + 1 * 0 = 1/4.
  assert metric.result()['AP'] == pytest.approx(25)


def test_class_with_gt_but_no_prediction_scores_zero():
  metric = instance_ap.InstanceAP(DS)
  metric.add_matches(instance_ap.match_instance_map(
      _frame(), np.zeros((20, 20), int), [], []))
  assert metric.result()['per_class']['car'] == {'AP': 0.0, 'AP50': 0.0}


def test_masks_and_instance_map_agree():
  gt = _frame()
  pred = np.zeros_like(gt)
  pred[1:11, 0:10] = 1
  pred[12:20, 11:20] = 2
  from_map = instance_ap.match_instance_map(gt, pred, [26, 24], [0.3, 0.4])
  crop = (pred == 1)[1:11, 0:10]
  from_masks = instance_ap.match_masks(gt, [(crop, (1, 0)), pred == 2],
                                       [26, 24], [0.3, 0.4])
  for key, value in from_map.items():
    np.testing.assert_array_equal(value, from_masks[key], err_msg=key)


def test_unknown_label_names_the_prediction():
  with pytest.raises(ValueError, match='x.txt: unknown label id 40'):
    instance_ap.match_masks(_frame(), [np.ones((20, 20), bool)], [40], [1.],
                            name='x.txt')


def test_matches_official(official_case):
  metric = instance_ap.InstanceAP(DS)
  for image_id, inst in official_case['gt'].items():
    pan, scores = official_case['preds'][image_id]
    extras = official_case['extra_masks'].get(image_id)
    if not extras:
      metric.update_panoptic(inst, pan, scores)
      continue
    # Overlapping duplicates go through the mask interface.
    masks = [(pan == i, DS.train_id_to_label_id[i // 1000], s)
             for i, s in scores.items()] + extras
    metric.update_masks(inst, *zip(*masks))
  official = official_case['official']['instance']['averages']
  result = metric.result()
  assert result['AP'] == pytest.approx(official['allAp'] * 100, abs=0.01)
  assert result['AP50'] == pytest.approx(official['allAp50%'] * 100, abs=0.01)
  assert 5 < result['AP'] < result['AP50'] < 90
  for name, values in result['per_class'].items():
    expected = official['classes'][name]
    if values is None:
      assert np.isnan(expected['ap']), name
    else:
      assert values['AP'] == pytest.approx(expected['ap'] * 100, abs=0.01)
      assert values['AP50'] == pytest.approx(expected['ap50%'] * 100, abs=0.01)
