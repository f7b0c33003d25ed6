"""The RGB encoding of panoptic ids in PNGs: id = R + 256 G + 65536 B.

COCO panoptic PNGs (cityscapesscripts' `createPanopticImgs`), the pseudo-label
folders, the TFRecord labels and `predict.py`'s PNGs all store ids this way;
every writer and reader uses this one pair of functions.
"""

import numpy as np

MAX_ID = 1 << 24  # Three 8-bit channels.


def ids_to_rgb(ids) -> np.ndarray:
  """[...] ids in [0, 2**24) -> [..., 3] uint8 (R, G, B)."""
  ids = np.asarray(ids)
  if ids.size and (ids.min() < 0 or ids.max() >= MAX_ID):
    raise ValueError(f'ids outside [0, 2**24): {ids.min()}..{ids.max()}')
  ids = ids.astype(np.uint32)
  return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255],
                  axis=-1).astype(np.uint8)


def rgb_to_ids(rgb):
  """[..., 3] (R, G, B) -> [...] ids; the inverse of `ids_to_rgb`.

  A numpy array (any integer dtype) gives int32; a tensor must already be an
  integer type wide enough (int32), as `tf.io.decode_png` output cast once.
  """
  if isinstance(rgb, np.ndarray):
    rgb = rgb.astype(np.int32)
  return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
