"""PNG files of one prediction, for people (overlays) and for cityscapesscripts.

Shared by `predict.py` (checkpoint or SavedModel on local images) and `client.py`
(answers of a model server), so both write the same files. Per image stem:
  * `<stem>_panoptic.png`: RGB, segment id = R + 256 G + 65536 B, where the id
    is the gtFine instanceId (below), as cityscapesscripts' `createPanopticImgs`
    encodes panoptic ground truth; void is 0;
  * `<stem>_trainIds.png`: 8-bit train ids (void = the ignore label, 255);
  * `<stem>_labelIds.png`: 8-bit Cityscapes label ids (what its evaluators read);
  * `<stem>_instanceIds.png`: 16-bit Cityscapes instanceIds (label_id * 1000 +
    k - 1 for thing instance k >= 1, label_id for stuff and crowd, 0 for void),
    as in gtFine (`evaluator.instance_ids_from_panoptic`);
  * `<stem>_overlay.png`: the image blended with the class palette, thing
    instances outlined in white.
Files are written through `core/file_io` (temporary name, then rename).
"""

import io
import os
from typing import Dict, Mapping

import numpy as np
from PIL import Image

from official_naive_student import common
from official_naive_student import datasets
from official_naive_student import panoptic_rgb
from official_naive_student.core import evaluator
from official_naive_student.core import file_io

SUFFIXES = ('panoptic', 'trainIds', 'labelIds', 'instanceIds', 'overlay')


def instance_outlines(panoptic: np.ndarray,
                      info: datasets.DatasetInfo) -> np.ndarray:
  """[H, W] bool: thing-instance pixels whose right or lower neighbour differs."""
  panoptic = np.asarray(panoptic)
  is_instance = (np.isin(panoptic // info.label_divisor, info.thing_train_ids)
                 & (panoptic % info.label_divisor > 0))
  edge = np.zeros(panoptic.shape, bool)
  edge[:, :-1] |= panoptic[:, :-1] != panoptic[:, 1:]
  edge[:-1, :] |= panoptic[:-1, :] != panoptic[1:, :]
  edge[:, 1:] |= edge[:, :-1] & is_instance[:, 1:]  # Two-pixel wide outlines.
  return edge & is_instance


def overlay(image: np.ndarray, semantic: np.ndarray, panoptic: np.ndarray,
            info: datasets.DatasetInfo, alpha: float = 0.5) -> np.ndarray:
  """[H, W, 3] uint8: image blended with class colours, instances outlined."""
  colors = info.colormap_array()[np.clip(semantic, 0, 255)].astype(np.float32)
  blended = (1.0 - alpha) * np.asarray(image, np.float32) + alpha * colors
  blended[instance_outlines(panoptic, info)] = 255.0
  return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def write_prediction(out_dir: str, stem: str, image: np.ndarray,
                     prediction: Mapping[str, np.ndarray],
                     info: datasets.DatasetInfo) -> Dict[str, str]:
  """Writes the five PNGs of one image; returns {suffix: path}.

  Args:
    out_dir: output folder (created).
    stem: file name stem, e.g. the input's name without extension.
    image: [H, W, 3] uint8 input image (for the overlay).
    prediction: one image's common.PRED_PANOPTIC and PRED_SEMANTIC [H, W].
    info: the label space the model predicts.
  """
  panoptic = np.asarray(prediction[common.PRED_PANOPTIC])
  semantic = np.asarray(prediction[common.PRED_SEMANTIC])
  if panoptic.shape != semantic.shape or panoptic.shape != image.shape[:2]:
    raise ValueError(f'{stem}: panoptic {panoptic.shape}, semantic '
                     f'{semantic.shape} and image {image.shape[:2]} differ')
  label_lut = np.zeros((256,), np.uint8)
  label_lut[:info.num_classes] = info.train_id_to_label_id
  semantic8 = np.clip(semantic, 0, 255).astype(np.uint8)
  instance_ids = evaluator.instance_ids_from_panoptic(panoptic, info)
  arrays = {
      'panoptic': panoptic_rgb.ids_to_rgb(instance_ids),
      'trainIds': semantic8,
      'labelIds': label_lut[semantic8],
      'instanceIds': instance_ids.astype(np.uint16),
      'overlay': overlay(image, semantic, panoptic, info),
  }
  paths = {}
  for suffix in SUFFIXES:
    paths[suffix] = os.path.join(out_dir, f'{stem}_{suffix}.png')
    file_io.atomic_write_bytes(paths[suffix], png_bytes(arrays[suffix]))
  return paths
