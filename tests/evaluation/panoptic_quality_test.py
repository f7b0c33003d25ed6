"""PanopticQuality: worked examples of the official rules and equality with the evaluator."""

import numpy as np
import pytest

from official_naive_student import datasets
from official_naive_student.evaluation import panoptic_quality

DS = datasets.CITYSCAPES
VOID = 255000


def test_worked_example():
  gt = np.array([[0, 0, 0, 0],
                 [13001, 13001, 0, 0],
                 [13001, 13001, 13002, 13002],
                 [VOID, VOID, 13002, 13002]])
  pred = np.array([[0, 0, 0, 0],
                   [13001, 13001, 0, 0],
                   [13001, 13001, 0, 0],
                   [13001, 13001, 13005, 0]])
  metric = panoptic_quality.PanopticQuality(DS)
  metric.update(gt, pred)
  result = metric.result()
  # road: gt 6 px, pred 9 px, intersection 6 -> IoU 2/3, a match.
  assert result['per_class']['road']['PQ'] == pytest.approx(200 / 3)
  # car 1: pred 6 px of which 2 on void, which leave the union -> IoU 1.
  # car 2: the 1-px prediction (IoU 1/4) is a false positive, car 2 a miss.
  car = result['per_class']['car']
  assert (car['tp'], car['fp'], car['fn']) == (1, 1, 1)
  assert car['SQ'] == pytest.approx(100)
  assert car['PQ'] == pytest.approx(50)
  assert result['PQ'] == pytest.approx((200 / 3 + 50) / 2)
  assert result['PQ_things'] == pytest.approx(50)
  assert result['PQ_stuff'] == pytest.approx(200 / 3)


def test_prediction_on_crowd_is_not_a_false_positive():
  gt = np.full((4, 4), 0)
  gt[:, :2] = 13000                        # car crowd region
  pred = gt.copy()
  pred[:, :3] = 13007                      # 8 of 12 px on the crowd region
  stats = panoptic_quality.panoptic_frame_stats(gt, pred, DS)
  assert stats[panoptic_quality.FP, 13] == 0
  assert stats[panoptic_quality.TP, 13] == 0  # a crowd never matches
  pred[:, :4] = 13007                      # now only 8 of 16 px: not > 0.5
  stats = panoptic_quality.panoptic_frame_stats(gt, pred, DS)
  assert stats[panoptic_quality.FP, 13] == 1


def test_segment_errors_name_the_file():
  ids = np.array([[1, 2]])
  with pytest.raises(ValueError, match='p.png: segment id 2 is in the image'):
    panoptic_quality.segment_frame_stats(ids, [(1, 0, 0), (2, 0, 0)], ids,
                                         [(1, 0)], 19, 'p.png')
  with pytest.raises(ValueError, match='p.png: segment 3 is listed'):
    panoptic_quality.segment_frame_stats(ids, [(1, 0, 0), (2, 0, 0)], ids,
                                         [(1, 0), (2, 0), (3, 0)], 19, 'p.png')
  with pytest.raises(ValueError, match='unknown panoptic id 19000'):
    panoptic_quality.panoptic_frame_stats(np.zeros((1, 1)).astype(int),
                                          np.array([[19000]]), DS)


def test_matches_official(official_case):
  metric = panoptic_quality.PanopticQuality(DS)
  for image_id, inst in official_case['gt'].items():
    metric.update(panoptic_quality.panoptic_from_instance_ids(inst, DS),
                  official_case['preds'][image_id][0])
  official = official_case['official']['panoptic']
  result = metric.result()
  for ours, theirs in (('', 'All'), ('_things', 'Things'), ('_stuff', 'Stuff')):
    for key in ('PQ', 'SQ', 'RQ'):
      assert result[key + ours] == pytest.approx(
          official[theirs][key.lower()] * 100, abs=0.01), key + ours
  assert 20 < result['PQ'] < 90
  label_ids = dict(zip(DS.class_names, DS.train_id_to_label_id))
  for name, values in result['per_class'].items():
    expected = official['per_class'][str(label_ids[name])]
    for key in ('PQ', 'SQ', 'RQ'):
      assert values[key] == pytest.approx(expected[key.lower()] * 100,
                                          abs=0.01), (name, key)
