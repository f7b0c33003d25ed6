"""Samples the objects of a street scene: traffic, pedestrians, poles, clutter.

Every object is placed by where it is at the *labeled* frame and moves with a
constant world velocity, so the annotated frame is guaranteed to show the
objects chosen for it, while over the snippet they enter, pass the camera,
leave and occlude each other. Thing objects carry Cityscapes instance values
(label_id * 1000 + k, with k counted per class within the snippet, so one
object keeps its id in every frame); a crowd carries the bare label id, as in
Cityscapes' group annotations.
"""

import dataclasses
from typing import Dict, List, Tuple

import numpy as np

from official_naive_student.dataloaders.synthetic import label_ids as L
from official_naive_student.dataloaders.synthetic import scene as scene_lib

# Large vehicles cycle over snippets so that a few snippets show all three.
LARGE_VEHICLES = ('truck', 'bus', 'train')

_CAR_COLOURS = np.array(
    [[170, 20, 25], [25, 50, 140], [185, 185, 190], [230, 230, 230],
     [25, 25, 28], [80, 80, 85], [30, 90, 50], [220, 180, 40]], np.float32)
_CLOTHES = np.array(
    [[30, 30, 35], [200, 40, 40], [40, 60, 150], [220, 220, 210],
     [90, 70, 50], [60, 120, 60], [230, 180, 30], [120, 40, 120]], np.float32)
_SKIN = np.array([[230, 190, 160], [190, 140, 100], [120, 80, 55]], np.float32)
_LARGE_COLOURS = np.array(
    [[235, 235, 230], [220, 190, 40], [180, 30, 30], [40, 80, 160],
     [60, 130, 70], [230, 120, 30]], np.float32)
_SIZES = {  # kind -> (width, height) in metres, before +-10% variation.
    'car': (1.8, 1.5), 'truck': (2.5, 3.4), 'bus': (2.55, 3.2),
    'train': (2.65, 3.7), 'person': (0.6, 1.75), 'crowd': (2.6, 1.75),
    'bicycle': (1.7, 1.05), 'motorcycle': (2.0, 1.2),
    'rider_bicycle': (1.7, 1.85), 'rider_motorcycle': (2.0, 1.7),
    'static': (0.6, 1.0),
}


@dataclasses.dataclass
class Prop:
  """One drawable object (see module doc for positions and instance values).

  Attributes:
    kind: shape name understood by `shapes.rasterize`.
    x, z: world position (metres) of its ground centre at the labeled frame.
    vx, vz: world velocity in metres per second.
    width, height: extent in metres of its drawing box.
    values: instanceIds values of its parts (main part first; a rider's bike
      second; a pole's sign or light second).
    colours: [K, 3] float32 RGB of its parts.
    variant: shape variant (e.g. sign shape, lit light, bus livery).
    phase: walking/wheel phase in radians.
    facing: +1 or -1, which way a side view points.
  """
  kind: str
  x: float
  z: float
  vx: float
  vz: float
  width: float
  height: float
  values: Tuple[int, ...]
  colours: np.ndarray
  variant: int = 0
  phase: float = 0.0
  facing: float = 1.0

  def position(self, frame: int, labeled_frame: int) -> Tuple[float, float]:
    dt = (frame - labeled_frame) * scene_lib.FRAME_DT
    return self.x + self.vx * dt, self.z + self.vz * dt


class _Ids:
  """Hands out label_id * 1000 + k, counting k per class."""

  def __init__(self):
    self._next: Dict[int, int] = {}

  def __call__(self, label_id: int) -> int:
    k = self._next.get(label_id, 0)
    self._next[label_id] = k + 1
    return label_id * L.INSTANCE_DIVISOR + k


def _make(rng, kind, x, z, vx, vz, values, colours, **kwargs) -> Prop:
  w, h = _SIZES[kind]
  s = rng.uniform(0.9, 1.1)
  return Prop(kind=kind, x=float(x), z=float(z), vx=float(vx), vz=float(vz),
              width=w * s, height=h * s, values=tuple(values),
              colours=np.asarray(colours, np.float32),
              phase=float(rng.uniform(0, 2 * np.pi)), **kwargs)


def _jitter(rng, colour, amount=0.12):
  return np.clip(colour * rng.uniform(1 - amount, 1 + amount, 3), 0, 255)


def _person_colours(rng):
  return np.stack([_SKIN[rng.integers(len(_SKIN))],
                   _jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))]),
                   _jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))])])


def _vehicle_colours(rng, palette):
  body = _jitter(rng, palette[rng.integers(len(palette))])
  accent = _jitter(rng, palette[rng.integers(len(palette))])
  return np.stack([body, accent, [30, 32, 38], [20, 20, 20]])


def _sample_traffic(rng, scene, ids, large_kind, ego_speed) -> List[Prop]:
  """Cars, one large vehicle and two-wheelers on the road."""
  props = []
  same_lanes = np.arange(0.0, scene.road_r - 1.0, 3.5)
  left_lanes = np.arange(-3.5, scene.road_l + 1.0, -3.5)
  for _ in range(int(rng.integers(1, 3))):  # ahead, same direction
    props.append(_make(rng, 'car', rng.choice(same_lanes) + rng.normal(0, 0.2),
                       rng.uniform(10, 60), 0, ego_speed + rng.normal(0, 2),
                       [ids(L.CAR)], _vehicle_colours(rng, _CAR_COLOURS),
                       variant=int(rng.integers(3))))
  for _ in range(int(rng.integers(1, 4))):  # oncoming: pass and leave
    props.append(_make(rng, 'car', rng.choice(left_lanes) + rng.normal(0, 0.2),
                       rng.uniform(10, 80), 0, -rng.uniform(6, 14),
                       [ids(L.CAR)], _vehicle_colours(rng, _CAR_COLOURS),
                       variant=int(rng.integers(3))))
  for _ in range(int(rng.integers(1, 5))):  # parked at either road edge
    side = rng.choice([-1.0, 1.0])
    x = scene.road_r - 1.1 if side > 0 else scene.road_l + 1.1
    props.append(_make(rng, 'car', x, rng.uniform(4, 50), 0, 0, [ids(L.CAR)],
                       _vehicle_colours(rng, _CAR_COLOURS),
                       variant=int(rng.integers(3))))
  label = {'truck': L.TRUCK, 'bus': L.BUS, 'train': L.TRAIN}[large_kind]
  if large_kind == 'train':
    x, vz = scene.rail_x, rng.choice([-1, 1]) * rng.uniform(4, 10)
  else:
    x, vz = rng.choice(np.concatenate([same_lanes, left_lanes])), 0.0
    vz = ego_speed + rng.normal(0, 2) if x >= 0 else -rng.uniform(5, 12)
  props.append(_make(rng, large_kind, x, rng.uniform(14, 45), 0, vz,
                     [ids(label)], _vehicle_colours(rng, _LARGE_COLOURS),
                     variant=int(rng.integers(3))))
  for _ in range(int(rng.integers(1, 3))):  # riders near the right edge
    bike = 'motorcycle' if rng.random() < 0.5 else 'bicycle'
    bike_label = L.MOTORCYCLE if bike == 'motorcycle' else L.BICYCLE
    speed = rng.uniform(7, 13) if bike == 'motorcycle' else rng.uniform(3, 6)
    props.append(_make(
        rng, 'rider_' + bike, scene.road_r - rng.uniform(0.5, 1.5),
        rng.uniform(6, 35), 0, speed, [ids(L.RIDER), ids(bike_label)],
        np.concatenate([_person_colours(rng),
                        _vehicle_colours(rng, _CAR_COLOURS)[:2]]),
        facing=float(rng.choice([-1, 1]))))
  return props


def _sample_sidewalk(rng, scene, ids) -> List[Prop]:
  """Pedestrians, parked two-wheelers, a crowd and clutter on the sidewalks."""
  props = []

  def walk_x(side):
    if side > 0:
      return rng.uniform(scene.road_r + 0.6, scene.walk_r - 0.3)
    return rng.uniform(scene.walk_l + 0.3, scene.road_l - 0.6)

  for _ in range(int(rng.integers(2, 7))):
    side = rng.choice([-1.0, 1.0])
    crossing = rng.random() < 0.15
    vx = rng.choice([-1, 1]) * rng.uniform(0.8, 1.6) if crossing else 0.0
    vz = 0.0 if crossing else rng.choice([-1, 1]) * rng.uniform(0.5, 1.8)
    props.append(_make(rng, 'person', walk_x(side), rng.uniform(5, 40),
                       vx, vz, [ids(L.PERSON)], _person_colours(rng)))
  for _ in range(int(rng.integers(0, 3))):
    kind = 'bicycle' if rng.random() < 0.6 else 'motorcycle'
    label = L.BICYCLE if kind == 'bicycle' else L.MOTORCYCLE
    props.append(_make(rng, kind, walk_x(rng.choice([-1.0, 1.0])),
                       rng.uniform(5, 35), 0, 0, [ids(label)],
                       _vehicle_colours(rng, _CAR_COLOURS)[:2],
                       facing=float(rng.choice([-1, 1]))))
  if rng.random() < 0.35:
    colours = np.concatenate([_person_colours(rng) for _ in range(4)])
    props.append(_make(rng, 'crowd', walk_x(rng.choice([-1.0, 1.0])),
                       rng.uniform(20, 45), 0, 0, [L.PERSON], colours))
  for _ in range(int(rng.integers(0, 3))):
    props.append(_make(rng, 'static', walk_x(rng.choice([-1.0, 1.0])),
                       rng.uniform(5, 50), 0, 0, [L.STATIC],
                       [_jitter(rng, np.array([70, 110, 80]), 0.3)]))
  return props


def _sample_poles(rng, scene, labeled_frame) -> List[Prop]:
  """Poles along both curbs; some carry a traffic sign or a traffic light."""
  props = []
  cam_z = scene.cam_z[labeled_frame]
  z_first = scene.cam_z[0] - cam_z
  z_last = scene.cam_z[-1] - cam_z + scene_lib.FAR_Z
  for side in (-1.0, 1.0):
    x = scene.road_r + 0.4 if side > 0 else scene.road_l - 0.4
    z = z_first + rng.uniform(0, 10)
    while z < z_last:
      props.append(_pole(rng, x, z, int(rng.choice([0, 0, 1, 2]))))
      z += rng.uniform(12, 30)
  # One sign and one light are always in view at the labeled frame.
  for variant in (1, 2):
    side = rng.choice([-1.0, 1.0])
    x = scene.road_r + 0.4 if side > 0 else scene.road_l - 0.4
    props.append(_pole(rng, x, rng.uniform(10, 30), variant))
  return props


def _pole(rng, x, z, top) -> Prop:
  """A pole; `top` 0: bare, 1: traffic sign, 2: traffic light."""
  grey = np.array([120, 120, 125]) * rng.uniform(0.7, 1.2)
  if top == 1:
    values = (L.POLE, L.TRAFFIC_SIGN)
    plate = [[200, 30, 30], [30, 70, 170], [230, 200, 40], [235, 235, 235]]
    top_colour = _jitter(rng, np.array(plate[rng.integers(4)], np.float32))
  elif top == 2:
    values = (L.POLE, L.TRAFFIC_LIGHT)
    top_colour = np.array([35, 35, 30]) * rng.uniform(0.7, 1.3)
  else:
    values, top_colour = (L.POLE,), grey
  lit = [[230, 40, 30], [240, 170, 30], [40, 220, 90]][rng.integers(3)]
  return Prop(kind='pole', x=float(x), z=float(z), vx=0.0, vz=0.0,
              width=0.9, height=float(rng.uniform(3.5, 7.0)), values=values,
              colours=np.stack([grey, top_colour, lit]).astype(np.float32),
              variant=top * 4 + int(rng.integers(4)))


def sample_props(rng: np.random.Generator, scene: scene_lib.Scene,
                 labeled_frame: int, large_kind: str) -> List[Prop]:
  """All objects of one snippet, positions relative to the labeled frame.

  Positions are stored relative to the camera at the labeled frame (so z is
  the distance ahead at that frame); the renderer subtracts the camera's
  displacement for other frames.

  Args:
    rng: the snippet's generator.
    scene: its static scene (road layout, rail track).
    labeled_frame: index of the annotated frame.
    large_kind: one of LARGE_VEHICLES; 'train' needs `scene.rail_x`.

  Returns:
    The list of `Prop`s (unsorted; the renderer sorts by depth per frame).
  """
  ids = _Ids()
  ego_speed = float(scene.cam_z[1] - scene.cam_z[0]) / scene_lib.FRAME_DT
  props = _sample_traffic(rng, scene, ids, large_kind, ego_speed)
  props += _sample_sidewalk(rng, scene, ids)
  props += _sample_poles(rng, scene, labeled_frame)
  return props
