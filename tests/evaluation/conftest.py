"""A tiny Cityscapes-format val set, imperfect predictions and the official scores.

The session fixture `official_case` writes gtFine label/instance PNGs for a few
64x128 frames (stuff, void, ego vehicle, ignored stuff, crowd groups, a small
instance, caravan / trailer), runs cityscapesscripts' createPanopticImgs, writes
shifted / merged / split / missing / re-classed / spurious predictions with
`cityscapes_results`, and runs the three official evaluators in subprocesses.
Each accumulator's test then checks its numbers against theirs.
"""

import os

import numpy as np
import pytest
from PIL import Image

from official_naive_student import datasets
from official_naive_student.evaluation import cityscapes_results
from official_naive_student.evaluation import official_scripts

DS = datasets.CITYSCAPES
H, W = 64, 128
IMAGE_IDS = ('aachen_000000_000019', 'aachen_000001_000019',
             'bochum_000000_000313', 'bochum_000001_000313')
LABEL_TO_TRAIN = DS.label_id_to_train_id_lut()


def _rect(rng, h, w, top=(20, 56), left=(4, 120)):
  y = int(rng.integers(top[0], top[1] - h + 1))
  x = int(rng.integers(left[0], left[1] - w + 1))
  return slice(y, y + h), slice(x, x + w)


def make_gt(rng) -> np.ndarray:
  """[H, W] int32 Cityscapes instanceIds of one frame."""
  inst = np.full((H, W), 23, np.int32)          # sky
  inst[16:36] = 11                              # building
  inst[16:36, 96:] = 21                         # vegetation
  inst[36:] = 7                                 # road
  inst[44:, :24] = 8                            # sidewalk
  inst[26:34, 60:64] = 17                       # pole
  inst[40:44, 80:100] = 9                       # parking: ignored stuff
  inst[58:] = 1                                 # ego vehicle: void
  inst[:, :2] = 0                               # unlabeled
  things = [(26, 0, 12, 22), (26, 1, 10, 16), (26, 2, 9, 14), (26, None, 8, 20),
            (24, 0, 14, 7), (24, 1, 13, 8), (24, 2, 7, 6), (24, None, 10, 10),
            (25, 0, 13, 8), (33, 0, 9, 12), (33, 1, 10, 11), (29, 0, 10, 14), (30, None, 8, 8),
            (27, 0, 12, 20)]
  if rng.random() < 0.5:
    things.append((31, 0, 6, 6))                # only ever a small train
  for label_id, k, h, w in things:
    region = _rect(rng, h, w)
    inst[region] = label_id if k is None else label_id * 1000 + k
  return inst


def _shift(mask, rng, max_shift=3):
  dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
  return np.roll(mask, (int(dy), int(dx)), axis=(0, 1))


def make_prediction(gt, rng):
  """(panoptic ids, {instance id: score}) with typical mistakes."""
  train = LABEL_TO_TRAIN[np.where(gt < 1000, gt, gt // 1000)].astype(np.int64)
  thing = np.isin(train, DS.thing_train_ids) | ((gt >= 1000) & (train == 255))
  pan = np.where(thing, 0, train) * 1000        # stuff; things become road
  pan[train == 255] = np.where(rng.random() < 0.5, 255, 8) * 1000
  pan[_rect(rng, 6, 30, top=(16, 36))] = 3000   # building -> wall
  pan[_rect(rng, 5, 12, top=(36, 58))] = 9000   # spurious terrain
  scores, next_id = {}, [1]

  def paste(mask, train_id):
    pid = train_id * 1000 + next_id[0]
    next_id[0] += 1
    pan[mask] = pid
    scores[pid] = float(np.round(rng.uniform(0.05, 1.0), 2))  # ties happen

  ids = [v for v in np.unique(gt) if v >= 1000]
  rng.shuffle(ids)
  for n, v in enumerate(ids):
    mask, train_id = gt == v, int(LABEL_TO_TRAIN[v // 1000])
    if train_id == 255:
      train_id = 13                             # caravan predicted as car
    action = n % 7
    if action == 0:
      continue                                  # missed
    if action == 1:
      train_id = 14 if train_id == 13 else 12   # wrong class
    if action == 2:                             # split in two
      cols = np.nonzero(mask.any(axis=0))[0]
      left = mask.copy()
      left[:, cols[len(cols) // 2]:] = False
      paste(left, train_id)
      paste(mask & ~left, train_id)
      continue
    if action == 3:                             # duplicate
      paste(_shift(mask, rng, 1), train_id)
    paste(mask if action == 4 else _shift(mask, rng, 1 if action < 6 else 3),
          train_id)
  for v in (26, 24):                            # predictions over groups
    if (gt == v).any():
      paste(_shift(gt == v, rng, 2), int(LABEL_TO_TRAIN[v]))
  person = np.zeros_like(gt, bool)
  person[_rect(rng, 12, 6, top=(36, 58))] = True
  paste(person, 11)                             # false positive
  pan[_rect(rng, 3, 5, top=(36, 58))] = 13000   # car pixels without instance
  return pan, scores


def _best_iou(mask, gt):
  return max(((gt == v) & mask).sum() / ((gt == v) | mask).sum()
             for v in np.unique(gt[mask]))


def add_duplicates(instance_dir, image_id, pan, scores, gt, rng):
  """Appends overlapping copies of some instances to a frame's txt file.

  A panoptic map cannot hold two predictions of one object; the txt format can,
  and the official evaluator then keeps the best score and counts the others as
  false positives. Returns [(mask, label id, score)] of the copies.
  """
  extras = []
  lines = []
  best = sorted(scores, key=lambda i: -_best_iou(pan == i, gt))
  for n, pid in enumerate(best[:3]):
    mask = pan == pid
    score = float(np.round(rng.uniform(0.05, 1.0), 2))
    label_id = DS.train_id_to_label_id[pid // 1000]
    rel = f'masks/{image_id}_dup{n}.png'
    Image.fromarray(mask).save(os.path.join(instance_dir, rel))
    lines.append(f'{rel} {label_id} {score!r}\n')
    extras.append((mask, label_id, score))
  with open(os.path.join(instance_dir, f'{image_id}_instances.txt'), 'a') as f:
    f.write(''.join(lines))
  return extras


def write_gt(root, frames):
  for image_id, inst in frames.items():
    city_dir = os.path.join(root, 'gtFine', 'val', image_id.split('_')[0])
    os.makedirs(city_dir, exist_ok=True)
    base = os.path.join(city_dir, f'{image_id}_gtFine_')
    Image.fromarray(inst.astype(np.uint16)).save(base + 'instanceIds.png')
    label = np.where(inst < 1000, inst, inst // 1000).astype(np.uint8)
    Image.fromarray(label).save(base + 'labelIds.png')
  from cityscapesscripts.preparation import createPanopticImgs  # pylint: disable=g-import-not-at-top
  createPanopticImgs.convert2panoptic(os.path.join(root, 'gtFine'),
                                      setNames=['val'])


@pytest.fixture(scope='session')
def official_case(tmp_path_factory):
  """Paths of gt and predictions, our inputs per frame and the official results."""
  tmp = str(tmp_path_factory.mktemp('cityscapes'))
  rng = np.random.default_rng(7)
  gt = {image_id: make_gt(rng) for image_id in IMAGE_IDS}
  root = os.path.join(tmp, 'cityscapes')
  write_gt(root, gt)
  results = os.path.join(tmp, 'results')
  writer = cityscapes_results.ResultsWriter(
      os.path.join(results, 'semantic'), os.path.join(results, 'instance'),
      os.path.join(results, 'panoptic'))
  preds = {}
  for image_id, inst in gt.items():
    pan, scores = make_prediction(inst, rng)
    preds[image_id] = (pan, scores)
    writer.write(image_id, semantic=pan // 1000, panoptic=pan, scores=scores)
  writer.close()
  extras = {i: add_duplicates(writer.instance_dir, i, *preds[i], gt[i], rng)
            for i in IMAGE_IDS[:2]}
  work_dir = os.path.join(tmp, 'work')
  os.makedirs(work_dir)
  official = official_scripts.run(
      root, 'val', writer.semantic_dir, writer.instance_dir,
      writer.panoptic_json, writer.panoptic_dir, work_dir, timeout=120)
  return {'root': root, 'gt': gt, 'preds': preds, 'official': official,
          'extra_masks': extras,
          'semantic_dir': writer.semantic_dir,
          'instance_dir': writer.instance_dir,
          'panoptic_json': writer.panoptic_json,
          'panoptic_dir': writer.panoptic_dir}

