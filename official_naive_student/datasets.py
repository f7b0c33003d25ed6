"""Dataset descriptions: classes, thing classes, void label and label divisor.

One `DatasetInfo` per label space. Cityscapes (and the synthetic street video, which
uses Cityscapes' label space on purpose) come from `cityscapesscripts.helpers.labels`,
so train ids, label ids and colours are the official ones; CamVid is semantic only.
"""

import dataclasses
from typing import Dict, Tuple

import numpy as np
from cityscapesscripts.helpers import labels as cs_labels


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the evaluators need to know about a label space.

  Attributes:
    name: short name, e.g. 'cityscapes'.
    num_classes: number of train classes (the semantic head's width).
    class_names: train id -> name.
    thing_train_ids: train ids of the classes that have instances.
    ignore_label: train id of void pixels (no loss, not evaluated).
    label_divisor: panoptic id = train_id * label_divisor + instance id.
    colormap: [num_classes, 3] uint8 RGB palette, indexed by train id.
    train_id_to_label_id: train id -> dataset label id (the ids the official
      evaluators read); identity where the dataset has no separate label ids.
    void_label_id: the label id that result files give void pixels
      (Cityscapes' 'unlabeled' 0; CamVid's 11, as 0 is its sky).
  """
  name: str
  num_classes: int
  class_names: Tuple[str, ...]
  thing_train_ids: Tuple[int, ...]
  ignore_label: int = 255
  label_divisor: int = 1000
  colormap: Tuple[Tuple[int, int, int], ...] = ()
  train_id_to_label_id: Tuple[int, ...] = ()
  void_label_id: int = 0

  @property
  def stuff_train_ids(self) -> Tuple[int, ...]:
    return tuple(i for i in range(self.num_classes)
                 if i not in self.thing_train_ids)

  def colormap_array(self) -> np.ndarray:
    """[256, 3] uint8 palette; ids without a colour (void) are black."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(self.colormap)] = np.asarray(self.colormap, np.uint8)
    return palette

  def label_id_to_train_id_lut(self) -> np.ndarray:
    """[256] uint8 lookup from dataset label id to train id (void -> ignore)."""
    lut = np.full((256,), self.ignore_label, np.uint8)
    for train_id, label_id in enumerate(self.train_id_to_label_id):
      lut[label_id] = train_id
    return lut


def _cityscapes_info() -> DatasetInfo:
  train_labels = sorted(
      (l for l in cs_labels.labels if 0 <= l.trainId < 255),
      key=lambda l: l.trainId)
  return DatasetInfo(
      name='cityscapes',
      num_classes=len(train_labels),
      class_names=tuple(l.name for l in train_labels),
      thing_train_ids=tuple(l.trainId for l in train_labels if l.hasInstances),
      colormap=tuple(tuple(l.color) for l in train_labels),
      train_id_to_label_id=tuple(l.id for l in train_labels),
  )


CITYSCAPES = _cityscapes_info()

# Cityscapes label ids that are valid in a gtFine `_labelIds` PNG (0..33, and -1
# only for license plates, which never appears in label images).
CITYSCAPES_VALID_LABEL_IDS = frozenset(l.id for l in cs_labels.labels if l.id >= 0)

# Cityscapes label id of the ego vehicle (void; propagated per sequence).
CITYSCAPES_EGO_VEHICLE_ID = cs_labels.name2label['ego vehicle'].id

# The synthetic street video is written in Cityscapes' label space.
SYNTHETIC = dataclasses.replace(CITYSCAPES, name='synthetic')

# CamVid, SegNet's 11-class version: label PNG values 0..10 are the classes, 11 is void.
CAMVID_VOID_ID = 11
CAMVID = DatasetInfo(
    name='camvid',
    num_classes=11,
    class_names=('sky', 'building', 'pole', 'road', 'pavement', 'tree',
                 'sign_symbol', 'fence', 'car', 'pedestrian', 'bicyclist'),
    thing_train_ids=(),
    colormap=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
              (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
              (64, 0, 128), (64, 64, 0), (0, 128, 192)),
    train_id_to_label_id=tuple(range(11)),
    void_label_id=CAMVID_VOID_ID,
)

_REGISTRY: Dict[str, DatasetInfo] = {
    d.name: d for d in (CITYSCAPES, SYNTHETIC, CAMVID)}


def get_dataset_info(name: str = 'cityscapes') -> DatasetInfo:
  """Returns the `DatasetInfo` registered under `name`."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f'Unknown dataset {name!r}; known: {sorted(_REGISTRY)}') from None
