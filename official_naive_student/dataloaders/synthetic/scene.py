"""Samples one synthetic street scene: camera path, road layout, facades, light.

A scene is everything that stays fixed over a 30-frame snippet, in world metres:
x is lateral (right positive), z is forward along the road, y is up, and the
camera (a pinhole at `cam_h` metres) drives forward along z. Moving objects are
sampled separately (`agents.py`) and rendering (`render.py`) only reads these
values, so a scene plus a frame index fully determines every pixel and label,
which is what makes the generator deterministic and resumable.

Sizes in pixels are derived from the image size, so the same seed gives the
same street at 64x128 and at 256x512.
"""

import dataclasses
from typing import List

import numpy as np

from official_naive_student.dataloaders.synthetic import label_ids as L

# Cityscapes video runs at 17 Hz.
FRAME_DT = 1.0 / 17.0
# Objects closer than this to the camera (metres) are not drawn.
NEAR_Z = 1.0
# Facades farther than this are left to the sky (the horizon band).
FAR_Z = 160.0

# Facade layer types; the values index `LAYER_LABELS`.
GAP, BUILDING, VEGETATION, WALL, FENCE = 0, 1, 2, 3, 4
LAYER_LABELS = np.array([L.SKY, L.BUILDING, L.VEGETATION, L.WALL, L.FENCE],
                        np.uint8)
_FRONT_TYPES = (GAP, WALL, FENCE, VEGETATION)

_BUILDING_COLOURS = np.array(
    [[190, 170, 140], [150, 150, 155], [160, 85, 70], [215, 210, 200],
     [205, 185, 120], [200, 160, 160], [120, 110, 100]], np.float32)
_WALL_COLOURS = np.array(
    [[165, 160, 150], [125, 120, 115], [185, 175, 150], [140, 130, 150]],
    np.float32)
_FENCE_COLOURS = np.array(
    [[120, 90, 60], [95, 100, 95], [150, 140, 120], [70, 80, 70]], np.float32)
_VEGETATION_COLOURS = np.array(
    [[70, 110, 40], [50, 90, 45], [95, 125, 55], [60, 85, 30]], np.float32)


@dataclasses.dataclass
class Layer:
  """A row of facades parallel to the road at lateral position `x`.

  Segment i covers world z in [bounds[i], bounds[i + 1]) and has type
  `types[i]` (GAP, BUILDING, ...), height `heights[i]` and RGB `colours[i]`.
  For the front layer, `terrain[i]` says whether the ground behind the
  sidewalk is grass (terrain) or paved (sidewalk).
  """
  x: float
  bounds: np.ndarray
  types: np.ndarray
  heights: np.ndarray
  colours: np.ndarray
  terrain: np.ndarray


@dataclasses.dataclass
class Scene:
  """Everything about a snippet except the moving objects (see module doc)."""
  height: int
  width: int
  num_frames: int
  focal: float
  u0: float
  v0: np.ndarray          # [T] horizon row per frame (pitch jitter)
  cam_h: float
  cam_x: np.ndarray       # [T]
  cam_z: np.ndarray       # [T]
  road_l: float
  road_r: float
  lane_lines: np.ndarray  # [K] lateral positions of dashed markings
  walk_l: float           # sidewalk outer edges (negative / positive x)
  walk_r: float
  layers: List[Layer]     # back-left, back-right, front-left, front-right
  parking: np.ndarray     # [P, 3]: side (-1/1), z0, z1
  rail_x: float           # lateral centre of a tram track, or nan
  crossing: np.ndarray    # [2]: z0, z1 of a zebra crossing, or nans
  colours: dict           # 'road', 'walk', 'terrain', 'marking', ... -> [3]
  sky_top: np.ndarray     # [3]
  sky_horizon: np.ndarray  # [3]
  shadow: np.ndarray      # [3]: slope, period, duty of cast-shadow bands
  gain: np.ndarray        # [T, 3] per-frame, per-channel lighting gain
  noise_sigma: float
  grain: np.ndarray       # [256, 256] float32 white noise in [-1, 1]
  blotch: np.ndarray      # [256, 256] float32 smooth noise in [-1, 1]
  hood_top: np.ndarray    # [W] float32: first ego-vehicle row per column
  hood_colour: np.ndarray  # [3]
  border: int             # rectification-border width in pixels (0: none)
  unlabeled_rows: int     # void rows at the top (0: none)


def _smooth_noise(rng: np.random.Generator, cells: int, size: int = 256):
  """Periodic value noise: `cells` x `cells` random values, bilinear to size."""
  low = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
  low = np.concatenate([low, low[:1]], 0)
  low = np.concatenate([low, low[:, :1]], 1)
  pos = np.arange(size, dtype=np.float32) * cells / size
  i = pos.astype(np.int32)
  frac = pos - i
  interp = np.zeros((size, cells + 1), np.float32)
  interp[np.arange(size), i] = 1.0 - frac
  interp[np.arange(size), i + 1] = frac
  return interp @ low @ interp.T


def _sample_layer(rng, x, z_start, z_end, front):
  """Segments along z for one side; front layers cycle through their types."""
  bounds = [z_start]
  while bounds[-1] < z_end:
    bounds.append(bounds[-1] + rng.uniform(6.0, 22.0))
  n = len(bounds) - 1
  if front:
    # A shuffled cycle makes every front type appear within a few segments.
    order = np.concatenate([rng.permutation(len(_FRONT_TYPES))
                            for _ in range(n // len(_FRONT_TYPES) + 1)])
    types = np.array(_FRONT_TYPES, np.int32)[order[:n]]
    heights = np.where(types == VEGETATION, rng.uniform(1.0, 2.5, n),
                       rng.uniform(0.9, 2.2, n))
    terrain = rng.random(n) < np.where(types == WALL, 0.2, 0.7)
  else:
    types = rng.choice([GAP, BUILDING, BUILDING, BUILDING, VEGETATION], n)
    heights = np.where(types == VEGETATION, rng.uniform(5.0, 11.0, n),
                       rng.uniform(7.0, 24.0, n))
    terrain = np.zeros(n, bool)
  palettes = {BUILDING: _BUILDING_COLOURS, VEGETATION: _VEGETATION_COLOURS,
              WALL: _WALL_COLOURS, FENCE: _FENCE_COLOURS,
              GAP: _BUILDING_COLOURS}
  colours = np.stack([
      palettes[int(t)][rng.integers(len(palettes[int(t)]))]
      * rng.uniform(0.85, 1.15, 3) for t in types]).astype(np.float32)
  return Layer(x=x, bounds=np.array(bounds, np.float64),
               types=types.astype(np.int32), heights=heights.astype(np.float32),
               colours=colours, terrain=terrain)


def _sample_hood(rng, height, width):
  """Ego-car bonnet: a per-sequence height and curvature, fixed over time."""
  rise = rng.uniform(0.06, 0.17) * height
  curve = rng.uniform(0.02, 0.12) * height
  centre = width / 2 + rng.uniform(-0.05, 0.05) * width
  u = (np.arange(width, dtype=np.float32) + 0.5 - centre) / (width / 2)
  top = height - rise + curve * u * u
  return top.astype(np.float32)


def sample_scene(rng: np.random.Generator, height: int, width: int,
                 num_frames: int, labeled_frame: int,
                 has_train: bool) -> Scene:
  """Samples the static part of one snippet.

  Args:
    rng: the snippet's own generator (its sequence fixes the output).
    height, width: image size in pixels.
    num_frames: frames in the snippet (T).
    labeled_frame: index of the annotated frame; lighting drifts around it.
    has_train: lay a tram track (rail track, void) for a train to run on.

  Returns:
    A `Scene`.
  """
  t = np.arange(num_frames, dtype=np.float64)
  speed = rng.uniform(3.0, 14.0)
  cam_z = speed * FRAME_DT * (t - labeled_frame)
  cam_x = 0.15 * np.sin(rng.uniform(0, 2 * np.pi) + t * rng.uniform(0.05, 0.2))
  v0 = height * rng.uniform(0.40, 0.47) + rng.normal(0, 0.003 * height,
                                                     num_frames)
  lanes_left = int(rng.integers(1, 3))
  lanes_right = int(rng.integers(0, 2))
  road_l = -1.75 - 3.5 * lanes_left
  road_r = 1.75 + 3.5 * lanes_right
  lane_lines = np.arange(road_l + 3.5, road_r - 1.0, 3.5)
  walk_l = road_l - rng.uniform(2.0, 4.5)
  walk_r = road_r + rng.uniform(2.0, 4.5)
  z0, z1 = cam_z[0] - 5.0, cam_z[-1] + FAR_Z + 30.0
  layers = [
      _sample_layer(rng, walk_l - rng.uniform(0.0, 8.0), z0, z1, front=False),
      _sample_layer(rng, walk_r + rng.uniform(0.0, 8.0), z0, z1, front=False),
      _sample_layer(rng, walk_l, z0, z1, front=True),
      _sample_layer(rng, walk_r, z0, z1, front=True),
  ]
  parking = []
  for _ in range(int(rng.integers(0, 3))):
    start = rng.uniform(0.0, 60.0)
    parking.append((rng.choice([-1.0, 1.0]), start,
                    start + rng.uniform(8.0, 25.0)))
  parking = np.array(parking, np.float64).reshape(-1, 3)
  rail_x = road_l + 1.75 if has_train else float('nan')
  if rng.random() < 0.3:
    start = rng.uniform(15.0, 50.0)
    crossing = np.array([start, start + 4.0])
  else:
    crossing = np.array([np.nan, np.nan])
  grey = rng.uniform(80, 120)
  colours = {
      'road': np.array([grey, grey, grey * rng.uniform(1.0, 1.1)]),
      'walk': np.array([175, 150, 150]) * rng.uniform(0.8, 1.1, 3),
      'curb': np.array([190, 190, 185]) * rng.uniform(0.85, 1.05),
      'terrain': np.array([140, 150, 80]) * rng.uniform(0.8, 1.15, 3),
      'marking': np.array([235, 235, 230]) * rng.uniform(0.85, 1.0),
      'parking': np.array([130, 110, 115]) * rng.uniform(0.85, 1.1, 3),
      'rail': np.array([95, 85, 75]) * rng.uniform(0.85, 1.1, 3),
  }
  colours = {k: v.astype(np.float32) for k, v in colours.items()}
  tint = rng.uniform(0.9, 1.1, 3)
  drift = rng.uniform(-0.15, 0.15)
  base = rng.uniform(0.65, 1.25)
  gain = (base * tint[None, :] *
          (1.0 + drift * (t[:, None] - labeled_frame) / num_frames))
  hood_top = _sample_hood(rng, height, width)
  return Scene(
      height=height, width=width, num_frames=num_frames,
      focal=1.1 * width, u0=width / 2 + rng.uniform(-0.02, 0.02) * width,
      v0=v0, cam_h=rng.uniform(1.15, 1.45), cam_x=cam_x, cam_z=cam_z,
      road_l=road_l, road_r=road_r, lane_lines=lane_lines,
      walk_l=walk_l, walk_r=walk_r, layers=layers, parking=parking,
      rail_x=rail_x, crossing=crossing, colours=colours,
      sky_top=np.array([70, 120, 200], np.float32) * rng.uniform(0.8, 1.1, 3),
      sky_horizon=np.array([200, 215, 230], np.float32) * rng.uniform(0.85, 1.05),
      shadow=np.array([rng.uniform(-1.5, 1.5), rng.uniform(12.0, 40.0),
                       rng.uniform(0.0, 0.5)]),
      gain=gain.astype(np.float32), noise_sigma=rng.uniform(2.0, 6.0),
      grain=rng.uniform(-1.0, 1.0, (256, 256)).astype(np.float32),
      blotch=_smooth_noise(rng, 16),
      hood_top=hood_top,
      hood_colour=rng.choice([[25, 25, 30], [20, 30, 55], [45, 45, 45],
                              [60, 20, 20]]).astype(np.float32),
      border=int(rng.integers(1, 4) * max(1, width // 512))
      if rng.random() < 0.3 else 0,
      unlabeled_rows=int(rng.integers(1, 3)) if rng.random() < 0.2 else 0)
