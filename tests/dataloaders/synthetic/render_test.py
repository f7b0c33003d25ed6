"""Unit checks of scene sampling and frame rendering (no files)."""

import numpy as np

from official_naive_student.dataloaders.synthetic import agents
from official_naive_student.dataloaders.synthetic import render
from official_naive_student.dataloaders.synthetic import scene as scene_lib


def _snippet(seed, height=48, width=96, large='train'):
  rng = np.random.default_rng(seed)
  scene = scene_lib.sample_scene(rng, height, width, 30, 19,
                                 has_train=large == 'train')
  return scene, agents.sample_props(rng, scene, 19, large)


def test_render_frame_types_and_determinism():
  scene, props = _snippet(0)
  image, label, instance = render.render_frame(scene, props, 5, 19, 1)
  assert image.shape == (48, 96, 3) and image.dtype == np.uint8
  assert label.shape == (48, 96) and label.dtype == np.uint8
  assert instance.shape == (48, 96) and instance.dtype == np.int32
  again = render.render_frame(*_snippet(0), 5, 19, 1)
  for x, y in zip((image, label, instance), again):
    np.testing.assert_array_equal(x, y)


def test_same_seed_gives_same_street_at_any_size():
  """Geometry is metric, so a label map downsamples to the smaller render."""
  small = render.render_frame(*_snippet(4, 64, 128), 19, 19, 1)[1]
  large = render.render_frame(*_snippet(4, 128, 256), 19, 19, 1)[1]
  agree = np.mean(large[1::2, 1::2] == small)
  assert agree > 0.9


def test_props_are_placed_at_the_labeled_frame():
  scene, props = _snippet(2, large='bus')
  kinds = {p.kind for p in props}
  assert {'car', 'bus', 'person', 'pole'} <= kinds
  assert any(k.startswith('rider_') for k in kinds)
  signs = [p for p in props if p.kind == 'pole' and p.variant // 4 == 1]
  lights = [p for p in props if p.kind == 'pole' and p.variant // 4 == 2]
  assert any(10 <= p.z <= 30 for p in signs)
  assert any(10 <= p.z <= 30 for p in lights)
  assert scene.cam_z[19] == 0.0
