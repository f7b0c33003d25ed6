"""Whole-image inference in overlapping tiles: less memory at full resolution.

`TiledInference(tile_size)(model_fn, images)` runs the network on overlapping
tiles of the image, one after the other, and stitches the raw outputs at image
size: every output (semantic logits, center heatmap, offsets, and semantic
probabilities if present) is averaged where tiles overlap. Offsets are
(dy, dx) vectors from a pixel to its center in input pixels, which do not
depend on where the tile starts, so they stitch like the other maps. Its
signature is that of a `tta_fn`, so it plugs into
`inference.make_inference_fn(model, post_processor, tta_fn=TiledInference(...))`
and post-processing then runs once on the stitched maps.

Peak activation memory is that of one tile (benchmarks/MEMORY.md). The tiles
are chained by control dependencies so that the executor cannot run them
concurrently inside a tf.function.

Tiling approximates whole-image inference; it is not the same network:
* the ASPP image-pooling branch averages over the tile, not the image;
* near tile borders the convolutions see zero padding instead of the image
  (the overlap, `min_overlap`, moves those pixels away from where it matters);
* a tile sees only instance centers inside it; offsets of a large object cut
  by a border point to the center as the tile saw it.
With tiles of k * output_stride + 1 pixels starting at multiples of the output
stride (`align`, the default 16), every tile's feature grid coincides with
the whole image's, so an interior pixel far from the borders gets the same
features as in whole-image inference except for image pooling.
"""

import math
from typing import Callable, Dict, List, Sequence

import numpy as np
import tensorflow as tf

ModelFn = Callable[[tf.Tensor], Dict[str, tf.Tensor]]


def tile_starts(size: int, tile: int, min_overlap: int = 0,
                align: int = 1) -> List[int]:
  """Start offsets of the fewest tiles of `tile` pixels that cover `size`.

  Starts are multiples of `align`, except the last one, which is
  `size - tile` (a multiple of `align` too when both sizes are
  k * align + 1), and neighbours overlap by at least `min_overlap` pixels.

  Args:
    size: the image's length along one axis.
    tile: the tile's length; a tile at least as long as the image gives [0].
    min_overlap: pixels shared by neighbouring tiles, at least.
    align: every start but the last is a multiple of it.

  Returns:
    Increasing start offsets, the first 0 and the last size - tile.
  """
  if tile >= size:
    return [0]
  if not 0 <= min_overlap < tile:
    raise ValueError(f'min_overlap must be in [0, {tile}), got {min_overlap}.')
  step = tile - min_overlap
  count = math.ceil((size - tile) / step) + 1
  while True:
    starts = [int(round(i * (size - tile) / (count - 1))) // align * align
              for i in range(count - 1)] + [size - tile]
    if all(b - a <= step for a, b in zip(starts, starts[1:])):
      return starts
    count += 1


class TiledInference:
  """Runs a model on overlapping tiles and averages the outputs at image size.

  Args:
    tile_size: (height, width) of a tile; an axis shorter than the tile is
      not cut. Best k * output_stride + 1 (e.g. 513 x 1025 for 1025 x 2049
      Cityscapes images, 2 x 2 tiles).
    min_overlap: (height, width) pixels shared by neighbouring tiles, at least.
    align: tile starts are multiples of it (the output stride).

  Call: (model_fn, images [B, H, W, 3] with static H and W) -> the dict of
    model_fn's outputs, each [B, H, W, C] float32, averaged over the tiles
    that cover each pixel.

  Example:
    tiled = TiledInference(tile_size=(513, 1025))
    outputs = tiled(lambda x: model(x, training=False), images)
  """

  def __init__(self, tile_size: Sequence[int] = (513, 1025),
               min_overlap: Sequence[int] = (0, 0), align: int = 16):
    if len(tile_size) != 2 or len(min_overlap) != 2:
      raise ValueError(f'tile_size and min_overlap must be (height, width), '
                       f'got {tile_size} and {min_overlap}.')
    self.tile_size = tuple(int(t) for t in tile_size)
    self.min_overlap = tuple(int(o) for o in min_overlap)
    self.align = int(align)

  def tiles(self, height: int, width: int) -> List[tuple]:
    """[(y, x, tile height, tile width)] covering a height x width image."""
    th, tw = min(self.tile_size[0], height), min(self.tile_size[1], width)
    ys = tile_starts(height, th, self.min_overlap[0], self.align)
    xs = tile_starts(width, tw, self.min_overlap[1], self.align)
    return [(y, x, th, tw) for y in ys for x in xs]

  def __call__(self, model_fn: ModelFn,
               images: tf.Tensor) -> Dict[str, tf.Tensor]:
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
      raise ValueError('TiledInference needs images of static height and '
                       f'width, got shape {images.shape}.')
    count = np.zeros((height, width), np.float32)
    sums = {}
    for y, x, th, tw in self.tiles(height, width):
      tile = images[:, y:y + th, x:x + tw, :]
      if sums:  # One tile at a time: wait for the previous tile's outputs.
        with tf.control_dependencies(list(sums.values())):
          tile = tf.identity(tile)
      paddings = [[0, 0], [y, height - y - th], [x, width - x - tw], [0, 0]]
      for key, value in model_fn(tile).items():
        value = tf.pad(tf.cast(value, tf.float32), paddings)
        sums[key] = sums[key] + value if key in sums else value
      count[y:y + th, x:x + tw] += 1.0
    inverse = tf.constant((1.0 / count)[None, :, :, None])
    return {key: value * inverse for key, value in sums.items()}
