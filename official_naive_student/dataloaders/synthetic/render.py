"""Renders one frame of a synthetic street scene into image, labelIds, instanceIds.

Painter's algorithm with vectorised numpy: sky, then the perspective ground
(road, lane markings, sidewalks, terrain, parking, tram track), then facade
layers (buildings, vegetation, walls, see-through fences), then objects from
far to near, then the ego-car bonnet, then lighting and sensor noise. Surface
textures are looked up in world coordinates so that they move with the world
as the camera drives, as they would in real video.
"""

from typing import List, Tuple

import numpy as np

from official_naive_student.dataloaders.synthetic import agents
from official_naive_student.dataloaders.synthetic import label_ids as L
from official_naive_student.dataloaders.synthetic import scene as scene_lib
from official_naive_student.dataloaders.synthetic import shapes

# Ground zones; the values index `_ZONE_LABELS` and the scene's colours.
_ZONES = ('road', 'walk', 'terrain', 'parking', 'rail', 'marking', 'curb')
_ZONE_LABELS = np.array([L.ROAD, L.SIDEWALK, L.TERRAIN, L.PARKING,
                         L.RAIL_TRACK, L.ROAD, L.SIDEWALK], np.uint8)
_GLASS = np.array([55, 70, 90], np.float32)


def _lookup(table, i, j):
  """Periodic texture lookup at float coordinates (texels)."""
  return table[i.astype(np.int32) & 255, j.astype(np.int32) & 255]


def _sky(scene, frame, rows, cols):
  """Sky gradient with drifting clouds; only rows above the horizon need it."""
  h, w = scene.height, scene.width
  image = np.empty((h, w, 3), np.float32)
  label = np.full((h, w), L.SKY, np.uint8)
  last = min(max(int(np.floor(scene.v0[frame])) + 1, 0), h)
  rows = rows[:last]
  mix = np.clip(rows / np.float32(max(scene.v0[frame], 1.0)), 0, 1)[..., None]
  colour = scene.sky_top * (1 - mix) + scene.sky_horizon * mix
  cloud = _lookup(scene.blotch, rows * np.float32(150.0 / w) + 0 * cols,
                  cols * np.float32(200.0 / w) + np.float32(frame * 0.4))
  cloud = np.clip(cloud * 2.0 - 0.4, 0, 0.7)[..., None]
  image[:last] = colour * (1 - cloud) + 235.0 * cloud
  return image, label


def _ground(scene, frame, image, label, cols):
  """Fills the rows below the horizon with the ground plane."""
  v0, f = np.float32(scene.v0[frame]), np.float32(scene.focal)
  first = max(int(np.floor(v0)) + 1, 0)
  if first >= scene.height:
    return
  r = np.arange(first, scene.height, dtype=np.float32)[:, None] + 0.5
  depth = f * np.float32(scene.cam_h) / (r - v0)
  x = np.float32(scene.cam_x[frame]) + (cols - np.float32(scene.u0)) * (
      depth / f)
  zw = depth + np.float32(scene.cam_z[frame])
  zone = np.where((x >= scene.road_l) & (x <= scene.road_r), 0, 1)
  for layer, outside in ((scene.layers[2], x < scene.walk_l),
                         (scene.layers[3], x > scene.walk_r)):
    idx = np.clip(np.searchsorted(layer.bounds, zw[:, 0], 'right') - 1,
                  0, len(layer.types) - 1)
    zone = np.where(outside & layer.terrain[idx][:, None], 2, zone)
  for side, z0, z1 in scene.parking:
    edge = scene.road_r if side > 0 else scene.road_l
    inside = (np.abs(x - edge + side * 1.1) < 1.1) & (zw >= z0) & (zw < z1)
    zone = np.where(inside, 3, zone)
  road = zone == 0
  dashed = np.mod(zw, 9.0) < 3.5
  marking = np.zeros_like(road)
  for line in scene.lane_lines:
    marking |= (np.abs(x - line) < 0.08) & dashed
  for edge in (scene.road_l + 0.3, scene.road_r - 0.3):
    marking |= np.abs(x - edge) < 0.07
  if not np.isnan(scene.crossing[0]):
    marking |= ((zw >= scene.crossing[0]) & (zw < scene.crossing[1]) &
                (np.mod(x, 1.0) < 0.5))
  zone = np.where(road & marking, 5, zone)
  if not np.isnan(scene.rail_x):
    zone = np.where(np.abs(x - scene.rail_x) < 0.9, 4, zone)
  curb = ((x >= scene.road_r) & (x < scene.road_r + 0.2) |
          (x <= scene.road_l) & (x > scene.road_l - 0.2))
  zone = np.where(curb & (zone == 1), 6, zone)
  palette = np.stack([scene.colours[z] for z in _ZONES])
  colour = palette[zone]
  texture = (0.10 * _lookup(scene.grain, zw * 6, (x + 64) * 6) +
             0.10 * _lookup(scene.blotch, zw * 2, (x + 64) * 2))
  texture = np.where(zone == 2, texture * 2.5, texture)
  joints = (zone == 1) & ((np.mod(zw, 0.6) < 0.06) | (np.mod(x, 0.6) < 0.06))
  rails = (zone == 4) & (np.abs(np.abs(x - scene.rail_x) - 0.72) < 0.05)
  slope, period, duty = scene.shadow
  shadow = np.mod(zw + slope * x, period) < duty * period
  shade = (1 + texture) * np.where(joints, 0.85, 1.0) * np.where(
      shadow, 0.6, 1.0)
  colour = colour * shade[..., None]
  colour[rails] = (160.0, 160.0, 165.0)
  image[first:] = colour
  label[first:] = _ZONE_LABELS[zone]


def _facades(scene, frame, image, label, rows, cols):
  """Draws the four facade layers (back layers first)."""
  v0, f, cam_h = scene.v0[frame], scene.focal, scene.cam_h
  u = cols[0] - scene.u0
  for side_index, layer in enumerate(scene.layers):
    x_rel = layer.x - scene.cam_x[frame]
    with np.errstate(divide='ignore', invalid='ignore'):
      z_col = f * x_rel / u
    valid = (z_col > scene_lib.NEAR_Z) & (z_col < scene_lib.FAR_Z)
    z_col = np.where(valid, z_col, scene_lib.FAR_Z)
    zw = z_col + scene.cam_z[frame]
    idx = np.clip(np.searchsorted(layer.bounds, zw, 'right') - 1,
                  0, len(layer.types) - 1)
    kind = layer.types[idx]
    height = layer.heights[idx]
    leafy = kind == scene_lib.VEGETATION
    height = height + leafy * 1.2 * _lookup(scene.blotch, zw * 4, idx * 37.0)
    top = v0 - f * (height - cam_h) / z_col
    bottom = v0 + f * cam_h / z_col
    mask = (valid & (kind != scene_lib.GAP))[None, :] & (rows >= top) & (
        rows < bottom)
    rr, cc = np.nonzero(mask)
    if not rr.size:
      continue
    zp = zw[cc]
    yp = cam_h - (rr + 0.5 - v0) * z_col[cc] / f
    kp = kind[cc]
    keep = (kp != scene_lib.FENCE) | (np.mod(zp, 0.22) < 0.11) | (
        np.abs(yp - 0.3) < 0.06) | (np.abs(yp - height[cc] + 0.1) < 0.06)
    rr, cc, zp, yp, kp = rr[keep], cc[keep], zp[keep], yp[keep], kp[keep]
    colour = layer.colours[idx[cc]]
    grain = _lookup(scene.grain, yp * 10, zp * 10)
    amp = np.where(kp == scene_lib.VEGETATION, 0.35, 0.07)
    shade = 1 + amp * grain + 0.15 * _lookup(scene.blotch, yp * 3, zp * 3)
    colour = colour * (shade * (0.85 if side_index % 2 == 0 else 1.0))[:, None]
    window = ((kp == scene_lib.BUILDING) & (yp > 1.0) &
              (yp < height[cc] - 1.0) & (np.abs(np.mod(zp, 3.0) - 1.5) < 0.7) &
              (np.abs(np.mod(yp, 3.2) - 1.6) < 0.8))
    colour[window] = _GLASS * (1 + 0.3 * grain[window, None])
    image[rr, cc] = colour
    label[rr, cc] = scene_lib.LAYER_LABELS[kp]


def _objects(scene, props, frame, labeled_frame, image, label, instance):
  """Draws objects far to near, so nearer ones occlude farther ones."""
  v0, f = scene.v0[frame], scene.focal
  placed = []
  for prop in props:
    x, z = prop.position(frame, labeled_frame)
    z_rel = z - scene.cam_z[frame]
    if z_rel > scene_lib.NEAR_Z:
      placed.append((z_rel, x - scene.cam_x[frame], prop))
  placed.sort(key=lambda item: -item[0])
  for z_rel, x_rel, prop in placed:
    scale = f / z_rel
    u_c = scene.u0 + x_rel * scale
    v_b = v0 + scene.cam_h * scale
    c0 = max(int(np.floor(u_c - prop.width / 2 * scale)), 0)
    c1 = min(int(np.ceil(u_c + prop.width / 2 * scale)), scene.width)
    r0 = max(int(np.floor(v_b - prop.height * scale)), 0)
    r1 = min(int(np.ceil(v_b)), scene.height)
    if c0 >= c1 or r0 >= r1:
      continue
    ax = (np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - u_c) / scale
    by = (v_b - np.arange(r0, r1, dtype=np.float32)[:, None] - 0.5) / scale
    part, values, colours = shapes.rasterize(
        prop, ax, by, frame * scene_lib.FRAME_DT)
    sel = part > 0
    if not sel.any():
      continue
    p = part[sel]
    byb, axb = np.broadcast_to(by, sel.shape)[sel], np.broadcast_to(
        ax, sel.shape)[sel]
    shade = (0.85 + 0.25 * np.clip(byb / prop.height, 0, 1) +
             0.08 * _lookup(scene.grain, byb * 25, axb * 25 + 100))
    image[r0:r1, c0:c1][sel] = colours[p] * shade[:, None]
    v = values[p]
    label[r0:r1, c0:c1][sel] = np.where(v >= L.INSTANCE_DIVISOR,
                                        v // L.INSTANCE_DIVISOR, v)
    instance[r0:r1, c0:c1][sel] = v


def _hood(scene, image, label, instance, rows, cols):
  """The ego-car bonnet: fixed shape, dark paint reflecting the scene above."""
  top = scene.hood_top[None, :]
  mask = rows + 0.5 >= top
  if not mask.any():
    return
  src = np.clip(2 * top - rows - 1, 0, scene.height - 1).astype(np.int32)
  src = np.broadcast_to(src, mask.shape)
  cc = np.broadcast_to(cols.astype(np.int32), mask.shape)
  reflection = image[src[mask], cc[mask]]
  gloss = np.exp(-(rows + 0.5 - top) / (0.015 * scene.height))
  gloss = np.broadcast_to(gloss, mask.shape)[mask][:, None]
  image[mask] = scene.hood_colour * 0.75 + reflection * 0.2 + 60.0 * gloss
  label[mask] = L.EGO_VEHICLE
  instance[mask] = L.EGO_VEHICLE


def render_frame(scene: scene_lib.Scene, props: List[agents.Prop],
                 frame: int, labeled_frame: int,
                 noise_seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Renders frame `frame` of a snippet.

  Args:
    scene: the snippet's static scene.
    props: its objects.
    frame: 0-based frame index in the snippet.
    labeled_frame: index of the annotated frame (props are placed there).
    noise_seed: seeds this frame's sensor noise (with `frame`).

  Returns:
    image: [H, W, 3] uint8 RGB.
    label_ids: [H, W] uint8 Cityscapes label ids.
    instance_ids: [H, W] int32 Cityscapes instanceIds (label_id for stuff and
      crowds, label_id * 1000 + k for thing instances).
  """
  rows = np.arange(scene.height, dtype=np.float32)[:, None]
  cols = np.arange(scene.width, dtype=np.float32)[None, :]
  image, label = _sky(scene, frame, rows, cols)
  _ground(scene, frame, image, label, cols)
  _facades(scene, frame, image, label, rows, cols)
  instance = label.astype(np.int32)
  _objects(scene, props, frame, labeled_frame, image, label, instance)
  _hood(scene, image, label, instance, rows, cols)
  image *= scene.gain[frame]
  # Uniform sensor noise with standard deviation `noise_sigma`, drawn from raw
  # bytes because Gaussian draws cost more than the rest of the frame.
  rng = np.random.default_rng([noise_seed, frame])
  noise = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
  spread = scene.noise_sigma * np.sqrt(12.0)
  image += noise * np.float32(spread / 256) + np.float32(0.5 - spread / 2)
  np.clip(image, 0, 255, out=image)
  image = image.astype(np.uint8)
  if scene.border:
    for sl in (np.s_[:, :scene.border], np.s_[:, -scene.border:]):
      image[sl] = 0
      label[sl] = L.RECTIFICATION_BORDER
      instance[sl] = L.RECTIFICATION_BORDER
  if scene.unlabeled_rows:
    label[:scene.unlabeled_rows] = L.UNLABELED
    instance[:scene.unlabeled_rows] = L.UNLABELED
  return image, label, instance
