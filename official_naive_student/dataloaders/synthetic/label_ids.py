"""Cityscapes label ids used by the synthetic street video.

The generator writes the official Cityscapes label space so that every reader,
evaluator and `createPanopticImgs` run on it unchanged; the ids come from
`cityscapesscripts.helpers.labels` rather than being typed in.
"""

import numpy as np
from cityscapesscripts.helpers import labels as cs_labels


def _id(name: str) -> int:
  return cs_labels.name2label[name].id


# Void classes that the generator uses where real Cityscapes has them.
UNLABELED = _id('unlabeled')
EGO_VEHICLE = _id('ego vehicle')
RECTIFICATION_BORDER = _id('rectification border')
STATIC = _id('static')
PARKING = _id('parking')
RAIL_TRACK = _id('rail track')

# The 11 stuff classes of the 19 train classes.
ROAD = _id('road')
SIDEWALK = _id('sidewalk')
BUILDING = _id('building')
WALL = _id('wall')
FENCE = _id('fence')
POLE = _id('pole')
TRAFFIC_LIGHT = _id('traffic light')
TRAFFIC_SIGN = _id('traffic sign')
VEGETATION = _id('vegetation')
TERRAIN = _id('terrain')
SKY = _id('sky')

# The 8 thing classes.
PERSON = _id('person')
RIDER = _id('rider')
CAR = _id('car')
TRUCK = _id('truck')
BUS = _id('bus')
TRAIN = _id('train')
MOTORCYCLE = _id('motorcycle')
BICYCLE = _id('bicycle')

THING_IDS = (PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE)

# Cityscapes instanceIds encoding: label_id * 1000 + k for a thing instance.
INSTANCE_DIVISOR = 1000


def color_lut() -> np.ndarray:
  """[256, 4] uint8 RGBA lookup from label id to the official `_color.png` colour."""
  lut = np.zeros((256, 4), np.uint8)
  lut[:, 3] = 255
  for label in cs_labels.labels:
    if label.id >= 0:
      lut[label.id, :3] = label.color
  return lut
