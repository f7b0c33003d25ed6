"""SemanticIoU: a worked example, its error messages, and equality with the official mIoU."""

import numpy as np
import pytest

from official_naive_student import datasets
from official_naive_student.evaluation import semantic_iou

DS = datasets.CITYSCAPES


def test_worked_example():
  # gt road(0) x3, sidewalk(1) x2, void x1; predictions below.
  gt = np.array([[0, 0, 0], [1, 1, 255]])
  pred = np.array([[0, 0, 255], [0, 1, 1]])
  metric = semantic_iou.SemanticIoU(DS)
  metric.update(gt, pred)
  iou = metric.class_iou()
  # road: tp 2, fn 1 (predicted void), fp 1 (on sidewalk) -> 2 / 4.
  assert iou[0] == pytest.approx(0.5)
  # sidewalk: tp 1, fn 1; the prediction on void gt is not a false positive.
  assert iou[1] == pytest.approx(0.5)
  assert np.isnan(iou[2:]).all()
  assert metric.result()['mIoU'] == pytest.approx(50.0)


def test_label_id_confusion_equals_train_id_confusion():
  rng = np.random.default_rng(0)
  gt_label = rng.choice(sorted(datasets.CITYSCAPES_VALID_LABEL_IDS), (20, 30))
  pred_label = rng.choice(sorted(datasets.CITYSCAPES_VALID_LABEL_IDS), (20, 30))
  lut = DS.label_id_to_train_id_lut()
  expected = semantic_iou.confusion_matrix(lut[gt_label], lut[pred_label],
                                           DS.num_classes)
  got = semantic_iou.label_id_confusion(gt_label.astype(np.uint8),
                                        pred_label.astype(np.uint8), DS)
  np.testing.assert_array_equal(got, expected)


def test_errors_name_the_prediction():
  gt = np.zeros((2, 2), np.uint8)
  with pytest.raises(ValueError, match='pred.png: unknown id 34'):
    semantic_iou.label_id_confusion(gt, np.full((2, 2), 34, np.uint8),
                                    name='pred.png')
  with pytest.raises(ValueError, match=r'pred.png: size \(2, 3\)'):
    semantic_iou.label_id_confusion(gt, np.zeros((2, 3), np.uint8),
                                    name='pred.png')
  with pytest.raises(ValueError, match='prediction: unknown id 19'):
    semantic_iou.SemanticIoU(DS).update(gt, np.full((2, 2), 19))


def test_matches_official(official_case):
  metric = semantic_iou.SemanticIoU(DS)
  lut = DS.label_id_to_train_id_lut()
  for image_id, inst in official_case['gt'].items():
    label = np.where(inst < 1000, inst, inst // 1000)
    metric.update(lut[label], official_case['preds'][image_id][0] // 1000)
  official = official_case['official']['pixel']
  result = metric.result()
  assert result['mIoU'] == pytest.approx(
      official['averageScoreClasses'] * 100, abs=0.01)
  assert 20 < result['mIoU'] < 90  # The case is neither trivial nor hopeless.
  for name, value in result['per_class'].items():
    expected = official['classScores'][name]
    if value is None:
      assert expected is None or np.isnan(expected), name
    else:
      assert value == pytest.approx(expected * 100, abs=0.01), name
