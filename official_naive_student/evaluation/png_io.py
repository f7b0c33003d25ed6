"""PNG readers for the Cityscapes evaluators: the official scripts' arrays, faster.

Decoding is most of an evaluation's time. Images are decoded with PIL, as the
official scripts do (`np.array(Image.open(path))`). Instance masks are many small
files of which only a bounding box matters, so `read_mask` takes a cheaper route
where it can prove that the result equals PIL's (`.convert('L')`, non-zero is
in the mask): a 1- or 8-bit grey, non-interlaced mask is inflated with `zlib`
and unfiltered with numpy from its first non-zero row on, and only its bounding
box is unpacked to pixels. PIL would build and scan the whole image, which
costs about three times as much for a 2048x1024 mask. Rows with the sequential
Average / Paeth filters are undone in Python, so a file with more than
`MAX_SEQUENTIAL_ROWS` of them, and anything unusual, goes to PIL instead.

Full images skip PIL's `tobytes` copies (`decode_into_array`). OpenCV's
decoder was measured too: it needs more CPU time than this for the same files
(its wall-clock edge on RGB comes from extra threads, which the evaluator's
process pool already uses), so it is not a dependency.
"""

import struct
import zlib
from typing import Optional, Tuple

import numpy as np
from PIL import Image

_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_GREY = 0
# PIL modes whose pixel storage is a plain [H, W] array of this type.
_DIRECT_DTYPES = {'L': np.uint8, 'I;16': np.dtype('<u2'), 'RGB': np.dtype('<u4'),
                  'RGBA': np.dtype('<u4')}
MAX_SEQUENTIAL_ROWS = 32


def png_header(data: bytes) -> Optional[Tuple[int, int, int, int, int]]:
  """(width, height, bit depth, colour type, interlace) of PNG bytes, or None."""
  if len(data) < 33 or not data.startswith(_SIGNATURE) or data[12:16] != b'IHDR':
    return None
  width, height, depth, color, _, _, interlace = struct.unpack(
      '>IIBBBBB', data[16:29])
  return width, height, depth, color, interlace


def _read_bytes(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def decode_into_array(image: Image.Image) -> Optional[np.ndarray]:
  """Decodes `image` straight into a new [H, W] array, or None if it cannot.

  `np.asarray(image)` goes through `image.tobytes()`, two more copies of all
  pixels (a few ms for a 2048x1024 frame). Instead the array's memory is
  handed to PIL as the image's storage before it decodes (the zero-copy
  mapping that `Image.frombuffer` uses), for the modes whose storage is the
  array's layout: 'L' (uint8), 'I;16' (uint16) and 'RGB' / 'RGBA' (four bytes
  a pixel, read as one little-endian uint32). This leans on PIL internals
  (`Image.core.map_buffer`, `ImageFile.load` keeping a preset `im`), so any
  surprise returns None and the caller takes the ordinary route.
  """
  dtype = _DIRECT_DTYPES.get(image.mode)
  if dtype is None or getattr(image, '_im', None) is not None:
    return None
  width, height = image.size
  array = np.empty((height, width), dtype)
  try:
    core = Image.core.map_buffer(array, image.size, 'raw', 0,
                                 (image.mode, 0, 1))
  except (AttributeError, TypeError, ValueError):
    return None
  image.im = core
  image.load()
  return array if image.im is core else None


def read_png(path: str) -> np.ndarray:
  """Decodes a PNG as the evaluators do (np.array of the PIL image)."""
  with Image.open(path) as image:
    if image.mode in ('L', 'I;16'):
      array = decode_into_array(image)
      if array is not None:
        return array
    return np.asarray(image)


def read_segment_ids(path: str) -> np.ndarray:
  """Decodes an RGB panoptic PNG to ids R + 256 G + 65536 B ([H, W] uint32)."""
  with Image.open(path) as image:
    if image.mode not in ('RGB', 'RGBA'):
      raise ValueError(f'{path}: expected an RGB panoptic PNG, got mode '
                       f'{image.mode}')
    ids = decode_into_array(image)
    if ids is None:
      # RGBA bytes read as little-endian uint32 give the id in one pass.
      ids = np.array(image.convert('RGBA')).view('<u4')[..., 0]
  ids &= 0xFFFFFF  # Drops alpha (the official rgb2id ignores it).
  return ids


def read_mask(path: str):
  """(crop, (top, left)) of a binary mask's bounding box, or None if empty.

  Like the official evaluator, any non-zero value after conversion to 8-bit grey
  is part of the mask. Returns (that, (width, height)).
  """
  fast = mask_from_png_bytes(_read_bytes(path))
  return fast if fast is not None else read_mask_pil(path)


def read_mask_pil(path: str):
  """`read_mask` by PIL, for any file PIL reads (the reference behaviour)."""
  with Image.open(path) as image:
    if image.mode not in ('1', 'L'):
      image = image.convert('L')
    size = image.size
    box = image.getbbox()
    if box is None:
      return None, size
    crop = np.asarray(image.crop(box)).astype(bool, copy=False)
  return (crop, (box[1], box[0])), size


def _grey_idat(data: bytes):
  """(width, height, depth, compressed pixels) of a plain grey PNG, or None.

  Plain: 1 or 8 bits, not interlaced, standard compression and filtering, no
  critical chunk besides IHDR / IDAT / IEND and every chunk's CRC correct
  (otherwise PIL decides what happens).
  """
  header = png_header(data)
  if (header is None or header[3] != _GREY or header[2] not in (1, 8)
      or header[4] != 0 or data[26:28] != b'\0\0'):
    return None
  idat, pos = [], 8
  while pos + 12 <= len(data):
    length, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    end = pos + 12 + length
    if end > len(data) or len(body) != length:
      return None
    crc, = struct.unpack('>I', data[end - 4:end])
    if zlib.crc32(body, zlib.crc32(kind)) != crc:
      return None
    if kind == b'IEND':
      return (header[0], header[1], header[2], b''.join(idat)) if idat else None
    if kind == b'IDAT':
      idat.append(body)
    elif kind != b'IHDR' and kind[0:1].isupper():
      return None  # An unknown critical chunk (or PLTE, invalid for grey).
    pos = end
  return None


def mask_from_png_bytes(data: bytes):
  """`read_mask`'s result for a plain grey PNG (see `_grey_idat`), else None."""
  plain = _grey_idat(data)
  if plain is None:
    return None
  width, height, depth, compressed = plain
  stride = (width * depth + 7) // 8
  if width == 0 or height == 0:
    return None
  try:  # The exact output size as buffer saves growing it (a third faster).
    raw = zlib.decompress(compressed, bufsize=height * (stride + 1))
  except zlib.error:
    return None
  if len(raw) != height * (stride + 1):
    return None
  rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
  filters, filtered = rows[:, 0], rows[:, 1:]
  if filters.max() > 4:
    return None
  busy = np.flatnonzero(filtered.any(axis=1))
  if not busy.size:
    return None, (width, height)  # All-zero filtered rows decode to zeros.
  # Rows above the first busy one are zero whatever their filter. Below the
  # last busy one, a None / Sub row is zero and so is every row after it; only
  # the Up / Average / Paeth rows before that can still copy the row above.
  start, end = busy[0], busy[-1] + 1
  resets = np.flatnonzero(filters[end:] <= 1)
  end = end + resets[0] if resets.size else height
  pixels = unfilter(filters[start:end], filtered[start:end])
  if pixels is None:
    return None
  if depth == 1 and width % 8:
    pixels[:, -1] &= (0xFF << (8 - width % 8)) & 0xFF  # Padding bits.
  on_rows = np.flatnonzero(pixels.any(axis=1))
  if not on_rows.size:
    return None, (width, height)
  pixels = pixels[on_rows[0]:on_rows[-1] + 1]
  on_cols = np.flatnonzero(pixels.any(axis=0))
  crop = pixels[:, on_cols[0]:on_cols[-1] + 1]
  left = int(on_cols[0])
  if depth == 1:
    crop = np.unpackbits(crop, axis=1).view(bool)
    cols = np.flatnonzero(crop.any(axis=0))
    crop = crop[:, cols[0]:cols[-1] + 1]
    left = left * 8 + int(cols[0])
  else:
    crop = crop != 0
  return (crop, (int(start + on_rows[0]), left)), (width, height)


def unfilter(filters: np.ndarray, filtered: np.ndarray) -> Optional[np.ndarray]:
  """Undoes PNG filtering (one byte per pixel step) below an all-zero row.

  Args:
    filters: [R] filter type of each row (0 None, 1 Sub, 2 Up, 3 Average,
      4 Paeth).
    filtered: [R, S] filtered bytes of each row.

  Returns:
    [R, S] uint8 raw bytes, or None when more than `MAX_SEQUENTIAL_ROWS` rows
    use Average or Paeth, whose bytes depend on each other within the row.
  """
  sequential = np.flatnonzero(filters >= 3)
  if sequential.size > MAX_SEQUENTIAL_ROWS:
    return None
  out = np.empty(filtered.shape, np.uint8)
  prior = np.zeros(filtered.shape[1:], np.uint8)
  begin = 0
  for stop in list(sequential) + [len(filters)]:
    if begin < stop:
      out[begin:stop] = _unfilter_vectorized(filters[begin:stop],
                                             filtered[begin:stop], prior)
      prior = out[stop - 1]
    if stop < len(filters):
      out[stop] = _unfilter_row(int(filters[stop]), filtered[stop], prior)
      prior = out[stop]
    begin = stop + 1
  return out


def _unfilter_vectorized(filters, filtered, prior):
  """None / Sub / Up rows at once (uint8 sums wrap modulo 256 as PNG's do).

  A None or Sub row is complete by itself; an Up row adds the row above, so a
  run of Up rows is a running sum restarted at every None / Sub row.
  """
  own = filtered.copy()
  sub = filters == 1
  if sub.any():
    own[sub] = np.cumsum(filtered[sub], axis=1, dtype=np.uint8)
  if not (filters == 2).any():
    return own
  stacked = np.concatenate([prior[None], own])
  restart = np.concatenate([[True], filters != 2])
  sums = np.cumsum(stacked, axis=0, dtype=np.uint8)
  base = np.maximum.accumulate(np.where(restart, np.arange(len(restart)), 0))
  before = np.concatenate([np.zeros_like(prior)[None], sums])[base]
  return (sums - before)[1:]


def _unfilter_row(kind: int, filtered: np.ndarray, prior: np.ndarray):
  """One Average (3) or Paeth (4) row, byte by byte."""
  if not filtered.any() and not prior.any():
    return np.zeros_like(filtered)
  f, b_row = filtered.tolist(), prior.tolist()
  out, a, c = [], 0, 0
  for x, value in enumerate(f):
    b = b_row[x]
    if kind == 3:
      a = (value + ((a + b) >> 1)) & 0xFF
    else:
      pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
      predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
      a = (value + predictor) & 0xFF
    out.append(a)
    c = b
  return np.array(out, np.uint8)
