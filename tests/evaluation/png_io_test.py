"""png_io: the fast readers give exactly PIL's arrays, and fall back to PIL."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from official_naive_student.evaluation import png_io


def _pil_mask(path):
  """The official evaluator's mask: non-zero after conversion to 8-bit grey."""
  return np.array(Image.open(path).convert('L')) != 0


def _as_full(result, size):
  """A `read_mask` result as a full [H, W] boolean mask."""
  mask, (width, height) = result
  assert (width, height) == size
  full = np.zeros((height, width), bool)
  if mask is not None:
    crop, (top, left) = mask
    full[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    # The crop is the tight bounding box, as PIL's getbbox gives it.
    assert crop[0].any() and crop[-1].any()
    assert crop[:, 0].any() and crop[:, -1].any()
  return full


def _chunk(kind, body):
  return (struct.pack('>I', len(body)) + kind + body +
          struct.pack('>I', zlib.crc32(body, zlib.crc32(kind))))


def _filter_row(kind, raw, prior):
  """PNG filter `kind` (one byte per step) applied to one row of ints."""
  out = []
  for x, value in enumerate(raw):
    a = raw[x - 1] if x else 0
    b, c = prior[x], prior[x - 1] if x else 0
    if kind == 0:
      predictor = 0
    elif kind == 1:
      predictor = a
    elif kind == 2:
      predictor = b
    elif kind == 3:
      predictor = (a + b) // 2
    else:
      pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
      predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
    out.append((value - predictor) % 256)
  return bytes([kind] + out)


def encode_grey(pixels, depth, filters, padding=0, interlace=0):
  """A grey PNG of [H, W] pixels (0/1 for depth 1) with given row filters.

  `padding` fills the unused low bits of a 1-bit row's last byte, which the
  PNG standard leaves unspecified.
  """
  height, width = pixels.shape
  if depth == 1:
    rows = np.packbits(pixels.astype(np.uint8), axis=1)
    if width % 8:
      rows[:, -1] |= padding & ((1 << (8 - width % 8)) - 1)
  else:
    rows = pixels.astype(np.uint8)
  prior = [0] * rows.shape[1]
  data = b''
  for row, kind in zip(rows.tolist(), filters):
    data += _filter_row(kind, row, prior)
    prior = row
  header = struct.pack('>IIBBBBB', width, height, depth, 0, 0, 0, interlace)
  return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) +
          _chunk(b'IDAT', zlib.compress(data)) + _chunk(b'IEND', b''))


def _blobs(rng, height, width, count=3):
  mask = np.zeros((height, width), bool)
  for _ in range(count):
    h, w = rng.integers(1, height // 2), rng.integers(1, width // 2)
    y, x = rng.integers(0, height - h), rng.integers(0, width - w)
    mask[y:y + h, x:x + w] ^= rng.random((h, w)) < 0.8
  return mask


@pytest.mark.parametrize('width', [64, 67, 9])
@pytest.mark.parametrize('mode', ['1', 'L'])
def test_pil_written_masks_take_the_fast_path(tmp_path, width, mode):
  rng = np.random.default_rng(width)
  for n in range(6):
    mask = _blobs(rng, 40, width)
    path = str(tmp_path / f'm{n}.png')
    values = mask * (255 if n % 2 else 1)
    Image.fromarray(values.astype(np.uint8)).convert(mode).save(
        path, compress_level=(1, 6, 9)[n % 3])  # cityscapes_results uses 1.
    with open(path, 'rb') as f:
      fast = png_io.mask_from_png_bytes(f.read())
    assert fast is not None
    assert np.array_equal(_as_full(fast, (width, 40)), _pil_mask(path))
    assert np.array_equal(_as_full(png_io.read_mask(path), (width, 40)),
                          _as_full(png_io.read_mask_pil(path), (width, 40)))


@pytest.mark.parametrize('depth', [1, 8])
def test_every_filter_type_and_padding_bits(tmp_path, depth):
  rng = np.random.default_rng(depth)
  width = 29
  for n in range(8):
    mask = _blobs(rng, 30, width)
    pixels = mask * (1 if depth == 1 else rng.integers(1, 256, mask.shape))
    filters = rng.integers(0, 5, 30)
    if n == 0:  # A rectangle copied down by Up rows of zeros.
      pixels = np.zeros_like(pixels)
      pixels[5:25, 3:20] = 1
      filters[:] = 2
    data = encode_grey(pixels, depth, filters, padding=0xFF)
    path = tmp_path / f'f{n}.png'
    path.write_bytes(data)
    fast = png_io.mask_from_png_bytes(data)
    assert fast is not None
    assert np.array_equal(_as_full(fast, (width, 30)), _pil_mask(str(path)))


def test_empty_mask(tmp_path):
  data = encode_grey(np.zeros((8, 16), np.uint8), 1, [4] * 8)
  assert png_io.mask_from_png_bytes(data) == (None, (16, 8))
  path = tmp_path / 'e.png'
  path.write_bytes(data)
  assert png_io.read_mask(str(path)) == (None, (16, 8))


def test_unusual_masks_fall_back_to_pil(tmp_path):
  mask = np.zeros((40, 24), np.uint8)
  mask[3:37, 2:20] = 1
  # Too many Average / Paeth rows, which are undone byte by byte.
  paeth = encode_grey(mask, 8, [4] * 40)
  assert png_io.MAX_SEQUENTIAL_ROWS < 40
  bad_crc = bytearray(encode_grey(mask, 1, [0] * 40))
  bad_crc[-20] ^= 0xFF  # Inside the IDAT chunk.
  cases = {'paeth': paeth, 'bad_crc': bytes(bad_crc),
           'interlaced': encode_grey(mask, 1, [0] * 40, interlace=1)}
  for name, data in cases.items():
    assert png_io.mask_from_png_bytes(data) is None, name
  path = tmp_path / 'paeth.png'
  path.write_bytes(paeth)
  assert np.array_equal(_as_full(png_io.read_mask(str(path)), (24, 40)),
                        mask != 0)
  # Palette and 16-bit masks: PIL's conversion to grey decides.
  for mode, array in (('P', mask * 3), ('I;16', mask.astype(np.uint16) * 300)):
    path = tmp_path / f'{mode[0]}.png'
    Image.fromarray(array).convert(mode).save(path)
    with open(path, 'rb') as f:
      assert png_io.mask_from_png_bytes(f.read()) is None
    assert np.array_equal(_as_full(png_io.read_mask(str(path)), (24, 40)),
                          _pil_mask(str(path)))


@pytest.mark.parametrize('array, mode', [
    (np.arange(24 * 40, dtype=np.uint8).reshape(24, 40), 'L'),
    (np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 37, 'I;16'),
    (np.arange(24 * 40, dtype=np.uint8).reshape(24, 40) % 7, 'P'),
    (np.arange(24 * 40, dtype=np.uint8).reshape(24, 40) % 2 == 1, '1'),
])
def test_read_png_equals_pil(tmp_path, array, mode):
  path = str(tmp_path / 'x.png')
  Image.fromarray(array).convert(mode).save(path)
  expected = np.asarray(Image.open(path))
  got = png_io.read_png(path)
  assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize('mode', ['RGB', 'RGBA'])
def test_read_segment_ids_equals_official_rgb2id(tmp_path, mode):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (24, 40, 4), np.uint8)
  path = str(tmp_path / 'p.png')
  Image.fromarray(rgb[..., :len(mode)], mode).save(path)
  color = np.array(Image.open(path), dtype=np.uint32)
  expected = color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]
  got = png_io.read_segment_ids(path)
  assert got.dtype == np.uint32 and np.array_equal(got, expected)
  # An image already decoded cannot be decoded into an array: PIL's copy.
  with Image.open(path) as image:
    image.load()
    assert png_io.decode_into_array(image) is None


def test_read_segment_ids_rejects_grey(tmp_path):
  path = str(tmp_path / 'g.png')
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
  with pytest.raises(ValueError, match='expected an RGB panoptic PNG'):
    png_io.read_segment_ids(path)
