"""Per-class object shapes, drawn in metres so they look alike at any scale.

Each object is a camera-facing billboard. `rasterize` gets the metric
coordinates of the pixels in its box (ax: metres right of its centre, by:
metres above the ground) and returns a part map: 0 is empty (the background
shows through, e.g. between a bicycle's spokes or a fence's posts) and p > 0
selects a part with its own instanceIds value, colour and texture strength.
Shapes are distinct per class (cars are rounded boxes with a cabin and wheels,
buses have window bands, persons are tall thin figures) so that a small CNN can
decide a class from local shape, colour and texture, but colours overlap
between classes so it cannot be a colour lookup.
"""

from typing import Tuple

import numpy as np

from official_naive_student.dataloaders.synthetic import agents

# Part colours taken from the object's colour table: index into prop.colours,
# or a fixed RGB for parts that look the same on every object.
_DARK_GLASS = np.array([45, 55, 70], np.float32)
_TYRE = np.array([22, 22, 24], np.float32)
_TAIL_LIGHT = np.array([200, 30, 30], np.float32)
_PLATE = np.array([225, 225, 215], np.float32)
_METAL = np.array([150, 150, 155], np.float32)
_UNLIT = np.array([60, 60, 55], np.float32)
_SIGN_SIGN = np.array([240, 240, 240], np.float32)

Parts = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _paint(shape, layers):
  """Later (mask, part) pairs paint over earlier ones."""
  part = np.zeros(shape, np.int8)
  for mask, index in layers:
    part[np.broadcast_to(mask, shape)] = index
  return part


def _ellipse(ax, by, cx, cy, rx, ry, power=2):
  return (np.abs(ax - cx) / rx) ** power + (np.abs(by - cy) / ry) ** power <= 1


def _segment(ax, by, p, q, radius):
  """Pixels within `radius` metres of the segment p-q (a thick line)."""
  dx, dy = q[0] - p[0], q[1] - p[1]
  t = np.clip(((ax - p[0]) * dx + (by - p[1]) * dy) / (dx * dx + dy * dy), 0, 1)
  return (ax - p[0] - t * dx) ** 2 + (by - p[1] - t * dy) ** 2 < radius ** 2


def _car(prop, a, b, shape):
  cabin_w = (0.78, 0.86, 0.94)[prop.variant % 3] - 0.2 * (b - 0.52) / 0.45
  cabin = (b >= 0.5) & _ellipse(a, b, 0, 0.74, cabin_w, 0.24, 4)
  body = _ellipse(a, b, 0, 0.34, 0.98, 0.22, 4)
  window = cabin & (np.abs(a) <= cabin_w - 0.1) & (b >= 0.6) & (b <= 0.9)
  tyre = (b < 0.16) & (np.abs(a) >= 0.55) & (np.abs(a) <= 0.92)
  light = (np.abs(b - 0.44) < 0.05) & (np.abs(a) >= 0.66) & (np.abs(a) <= 0.9)
  plate = (np.abs(a) < 0.2) & (np.abs(b - 0.25) < 0.05)
  return _paint(shape, [(tyre, 3), (body | cabin, 1), (window, 2),
                        (light, 4), (plate, 5)])


def _box_vehicle(prop, a, b, shape):
  """Truck, bus and train: tall boxes told apart by windows and liveries."""
  kind, v = prop.kind, prop.variant
  ax = a * prop.width / 2
  tyre = (b < 0.12) & (np.abs(a) >= 0.5) & (np.abs(a) <= 0.95)
  if kind == 'train':
    body = (b >= 0.03) & _ellipse(a, b, 0, 0.5, 0.99, 0.5, 6)
    accent = body & (b < 0.35 if v != 1 else np.abs(b - 0.42) < 0.05)
    window = (np.abs(a) < 0.85) & (b > 0.52) & (b < 0.82)
    roof = (b > 0.97) & (np.abs(a) < 0.45)
    light = (np.abs(b - 0.2) < 0.04) & (np.abs(a) > 0.6) & (np.abs(a) < 0.85)
    return _paint(shape, [(body, 1), (accent, 2), (window, 3), (roof, 4),
                          (light, 5)])
  if kind == 'bus':
    body = (b >= 0.08) & _ellipse(a, b, 0, 0.54, 0.99, 0.46, 6)
    band = (b > 0.55) & (b < 0.86) & (np.abs(a) < 0.92)
    window = band & (np.mod(ax / 1.1 + 0.5, 1.0) > 0.12)
    accent = body & (np.abs(b - 0.34) < (0.04, 0.08, 0.12)[v % 3])
    sign = (b > 0.89) & (b < 0.95) & (np.abs(a) < 0.6)
    return _paint(shape, [(tyre, 4), (body, 1), (accent, 2), (window, 3),
                          (sign, 6)])
  cab_top = 0.45 if v == 2 else 1.0  # variant 2: low flatbed behind the cab
  body = (b >= 0.1) & (b <= cab_top) & (np.abs(a) <= 0.98)
  if v == 0:
    accent = body & (np.abs(b - 0.5) < 0.06)
  else:
    accent = body & (np.mod(ax * 3.0, 1.0) < 0.15)
  bumper = (b >= 0.08) & (b <= 0.15) & (np.abs(a) <= 0.98)
  light = (np.abs(b - 0.2) < 0.03) & (np.abs(a) > 0.7) & (np.abs(a) < 0.9)
  return _paint(shape, [(tyre, 4), (body, 1), (accent, 2), (bumper, 4),
                        (light, 5)])


def _person(ax, by, h, phase, cx=0.0):
  """Masks (skin, top, bottom) of a standing person of height h, facing us."""
  s = h / 1.75
  swing = 0.12 * np.sin(phase) * s
  legs = (_segment(ax, by, (cx - 0.08 * s, 0.9 * s),
                   (cx - 0.08 * s + swing, 0.02), 0.075 * s) |
          _segment(ax, by, (cx + 0.08 * s, 0.9 * s),
                   (cx + 0.08 * s - swing, 0.02), 0.075 * s))
  torso = _ellipse(ax, by, cx, 1.2 * s, 0.21 * s, 0.36 * s)
  arms = (_segment(ax, by, (cx - 0.2 * s, 1.45 * s),
                   (cx - 0.27 * s - swing / 2, 0.9 * s), 0.05 * s) |
          _segment(ax, by, (cx + 0.2 * s, 1.45 * s),
                   (cx + 0.27 * s + swing / 2, 0.9 * s), 0.05 * s))
  head = _ellipse(ax, by, cx, 1.62 * s, 0.11 * s, 0.13 * s)
  return head, torso | arms, legs


def _bike(kind, ax, by):
  """Masks (frame/body, tyres, metal) of a bicycle or motorcycle, side view."""
  if kind == 'bicycle':
    hubs = ((-0.52, 0.34), (0.52, 0.34))
    d = [np.hypot(ax - x, by - y) for x, y in hubs]
    tyre = (np.abs(d[0] - 0.31) < 0.045) | (np.abs(d[1] - 0.31) < 0.045)
    crank, seat, head = (0.0, 0.32), (-0.12, 0.82), (0.42, 0.86)
    frame = (_segment(ax, by, hubs[0], crank, 0.03) |
             _segment(ax, by, crank, seat, 0.03) |
             _segment(ax, by, seat, head, 0.03) |
             _segment(ax, by, head, hubs[1], 0.03) |
             _segment(ax, by, crank, head, 0.03) |
             _segment(ax, by, hubs[0], seat, 0.025))
    metal = (_segment(ax, by, head, (0.36, 1.0), 0.03) |
             _ellipse(ax, by, -0.14, 0.88, 0.11, 0.035))
    return frame, tyre, metal
  hubs = ((-0.7, 0.3), (0.7, 0.3))
  d = [np.hypot(ax - x, by - y) for x, y in hubs]
  wheel = (d[0] < 0.3) | (d[1] < 0.3)
  hub = (d[0] < 0.12) | (d[1] < 0.12)
  body = _ellipse(ax, by, 0.05, 0.62, 0.75, 0.2) | _ellipse(
      ax, by, 0.45, 0.78, 0.2, 0.12)
  engine = (ax > -0.2) & (ax < 0.3) & (by > 0.28) & (by < 0.52)
  seat = (ax > -0.55) & (ax < 0.0) & (by > 0.76) & (by < 0.86)
  metal = hub | engine | _segment(ax, by, (0.55, 0.8), (0.5, 1.05), 0.03)
  return body, wheel & ~hub, metal | seat


def _two_wheeler(prop, ax, by, shape, time_s):
  """A parked bicycle/motorcycle, or a rider (values[0]) on one (values[1])."""
  ax = ax * prop.facing
  ridden = prop.kind.startswith('rider_')
  kind = prop.kind[len('rider_'):] if ridden else prop.kind
  frame, tyre, metal = _bike(kind, ax, by)
  if not ridden:
    return _paint(shape, [(frame, 1), (tyre, 2), (metal, 3)])
  # Parts 4-6 belong to the rider: skin, top, bottom.
  pedal = 0.12 * np.sin(prop.phase + time_s * 8.0)
  if kind == 'bicycle':
    hip, knee, foot = (-0.12, 0.95), (0.15, 0.7 + pedal / 2), (0.0, 0.34 + pedal)
    torso = _ellipse(ax - 0.6 * (by - 1.2), by, 0.02, 1.22, 0.16, 0.32)
    head, hand = (0.24, 1.6), (0.36, 1.0)
  else:
    hip, knee, foot = (-0.25, 0.9), (0.1, 0.8), (0.05, 0.5)
    torso = _ellipse(ax - 0.3 * (by - 1.2), by, -0.15, 1.2, 0.18, 0.3)
    head, hand = (-0.02, 1.55), (0.5, 1.02)
  legs = _segment(ax, by, hip, knee, 0.08) | _segment(ax, by, knee, foot, 0.06)
  arm = _segment(ax, by, (head[0] - 0.1, 1.38), hand, 0.05)
  skull = _ellipse(ax, by, head[0], head[1], 0.11, 0.13)
  return _paint(shape, [(frame, 1), (tyre, 2), (metal, 3), (legs, 6),
                        (torso | arm, 5), (skull, 4)])


def _pole(prop, ax, by, shape):
  top = prop.variant // 4
  radius = 0.06 + 0.015 * (prop.variant % 4)
  h = prop.height
  pole = (np.abs(ax) < radius) & (by < h)
  layers = [(pole, 1)]
  if top == 1:  # traffic sign: circle, triangle, square or wide plate
    cy, shape_kind = h - 0.45, prop.variant % 4
    if shape_kind == 0:
      plate = _ellipse(ax, by, 0, cy, 0.33, 0.33)
    elif shape_kind == 1:
      plate = (by > cy - 0.3) & (np.abs(ax) < (cy + 0.35 - by) * 0.6)
    elif shape_kind == 2:
      plate = (np.abs(ax) < 0.3) & (np.abs(by - cy) < 0.3)
    else:
      plate = (np.abs(ax) < 0.42) & (np.abs(by - cy) < 0.2)
    rim = plate & ~_ellipse(ax, by, 0, cy, 0.2, 0.12)
    layers += [(plate, 4), (rim, 2)]
  elif top == 2:  # traffic light: housing with three lamps, one lit
    box = (np.abs(ax) < 0.17) & (by > h - 1.0) & (by < h - 0.05)
    lit = prop.variant % 3
    lamps = [_ellipse(ax, by, 0, h - 0.25 - 0.27 * i, 0.09, 0.09)
             for i in range(3)]
    layers += [(box, 2), (lamps[(lit + 1) % 3] | lamps[(lit + 2) % 3], 5),
               (lamps[lit], 3)]
  return _paint(shape, layers)


def rasterize(prop: agents.Prop, ax: np.ndarray, by: np.ndarray,
              time_s: float) -> Parts:
  """Draws one object into the metric grid of its box.

  Args:
    prop: the object.
    ax: [1, w] metres right of its centre, per pixel column.
    by: [h, 1] metres above the ground, per pixel row.
    time_s: seconds since the snippet start (walking and pedalling).

  Returns:
    part: [h, w] int8 part map (0 empty).
    values: [P + 1] int32 instanceIds value per part (index 0 unused).
    colours: [P + 1, 3] float32 base colour per part.
  """
  shape = (by.shape[0], ax.shape[1])
  c = prop.colours
  kind = prop.kind
  if kind == 'car':
    a, b = ax / (prop.width / 2), by / prop.height
    part = _car(prop, a, b, shape)
    cols = [c[0], c[0], _DARK_GLASS, _TYRE, _TAIL_LIGHT, _PLATE]
    values = [prop.values[0]] * 6
  elif kind in ('truck', 'bus', 'train'):
    a, b = ax / (prop.width / 2), by / prop.height
    part = _box_vehicle(prop, a, b, shape)
    cols = [c[0], c[0], c[1], _DARK_GLASS, _TYRE, _TAIL_LIGHT, c[1] * 0.5 + 90]
    values = [prop.values[0]] * 7
  elif kind in ('person', 'crowd'):
    phase = prop.phase + time_s * 11.0 * float(prop.vx != 0 or prop.vz != 0)
    if kind == 'person':
      layers = _person(ax, by, prop.height, phase)
      part = _paint(shape, [(layers[2], 3), (layers[1], 2), (layers[0], 1)])
      cols = [c[0], c[0], c[1], c[2]]
    else:  # four overlapping people, back to front
      paints, cols = [], [c[0]]
      for i, cx in enumerate((-0.85, 0.8, -0.3, 0.3)):
        layers = _person(ax, by, prop.height * (0.9 + 0.05 * i), phase + i, cx)
        paints += [(layers[2], 3 * i + 3), (layers[1], 3 * i + 2),
                   (layers[0], 3 * i + 1)]
        cols += [c[3 * i], c[3 * i + 1], c[3 * i + 2]]
      part = _paint(shape, paints)
    values = [prop.values[0]] * len(cols)
  elif kind in ('bicycle', 'motorcycle', 'rider_bicycle', 'rider_motorcycle'):
    part = _two_wheeler(prop, ax, by, shape, time_s)
    bike = prop.values[-1]
    rider = prop.values[0]
    frame = c[-2] if kind.startswith('rider_') else c[0]
    cols = [frame, frame, _TYRE, _METAL]
    values = [bike] * 4
    if kind.startswith('rider_'):
      cols += [c[0], c[1], c[2]]
      values += [rider] * 3
  elif kind == 'pole':
    part = _pole(prop, ax, by, shape)
    top = prop.values[-1]
    cols = [c[0], c[0], c[1], c[2], _SIGN_SIGN, _UNLIT]
    values = [prop.values[0], prop.values[0], top, top, top, top]
  elif kind == 'static':
    part = _paint(shape, [(_ellipse(ax, by, 0, prop.height * 0.5, 0.3,
                                    prop.height * 0.5, 4), 1)])
    cols, values = [c[0], c[0]], [prop.values[0]] * 2
  else:
    raise ValueError(f'unknown object kind {kind!r}')
  return (part, np.asarray(values, np.int32),
          np.asarray(cols, np.float32).reshape(-1, 3))
