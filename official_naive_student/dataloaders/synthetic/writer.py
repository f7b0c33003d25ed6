"""Writes the synthetic Cityscapes-format street-video dataset to disk.

`make_synthetic_cityscapes` is the one entry point (the absl script in
`data/make_synthetic_cityscapes.py` only parses flags). It is:
- deterministic: snippet i is seeded by (seed, i) alone and PNGs are encoded
  the same way every time, so the same arguments give byte-identical files;
- atomic: every file is written to a temporary name and `os.replace`d, and
  the panoptic folders are built aside and renamed, so a killed run never
  leaves a half file;
- resumable: a snippet whose files all exist is skipped, and `DONE` (written
  last) makes a finished dataset return at once;
- parallel over snippets (processes), since rendering is pure numpy.
"""

import contextlib
import io
import json
import multiprocessing
import os
import shutil
from typing import Any, Dict, Mapping, Optional

import gin
import numpy as np
from PIL import Image
from cityscapesscripts.preparation import createPanopticImgs

from official_naive_student.core import file_io
from official_naive_student.dataloaders.synthetic import agents
from official_naive_student.dataloaders.synthetic import label_ids as L
from official_naive_student.dataloaders.synthetic import layout
from official_naive_student.dataloaders.synthetic import render
from official_naive_student.dataloaders.synthetic import scene as scene_lib

# Bump when the rendering changes, so an old dataset is not silently resumed.
GENERATOR_VERSION = 1
# zlib level 1: several times faster than PIL's default, files ~20 % larger.
PNG_COMPRESS_LEVEL = 1
_SEQUENCE_STREAM, _EXTRA_STREAM = 0, 1
_COLOR_LUT = L.color_lut()


def encode_png(array: np.ndarray) -> bytes:
  """PNG bytes: uint8 [H, W] (L), [H, W, 3|4] (RGB/RGBA), uint16 [H, W] (16 bit)."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG',
                              compress_level=PNG_COMPRESS_LEVEL)
  return buffer.getvalue()


def _snippet_files(root: str, snippet: layout.Snippet, num_frames: int,
                   labeled_frame: int) -> Dict[int, Dict[str, str]]:
  """frame -> {'image' | 'sequence' | 'labelIds' | ...: path} for one snippet."""
  hidden = layout.hidden_gt_root(root)
  frames = [labeled_frame] if snippet.is_extra else range(num_frames)
  files = {}
  for frame in frames:
    name = layout.frame_name(snippet.city, snippet.seq, frame)
    args = (snippet.split, snippet.city, name)
    paths = {'hidden_labelIds': layout.gt_path(hidden, *args, 'labelIds'),
             'hidden_instanceIds': layout.gt_path(hidden, *args, 'instanceIds')}
    if snippet.is_extra:
      paths['image'] = layout.image_path(root, *args)
    else:
      paths['sequence'] = layout.sequence_image_path(root, *args)
      if frame == labeled_frame:
        paths['image'] = layout.image_path(root, *args)
        for kind in ('labelIds', 'instanceIds', 'color'):
          paths[kind] = layout.gt_path(root, *args, kind)
    files[frame] = paths
  return files


def _write_snippet(job) -> int:
  """Renders and writes one snippet's missing files; returns frames rendered."""
  root, snippet, cfg = job
  files = _snippet_files(root, snippet, cfg['frames_per_sequence'],
                         cfg['labeled_frame'])
  if all(os.path.exists(p) for paths in files.values() for p in paths.values()):
    return 0
  stream = _EXTRA_STREAM if snippet.is_extra else _SEQUENCE_STREAM
  rng = np.random.default_rng([cfg['seed'], stream, snippet.key])
  large = agents.LARGE_VEHICLES[snippet.key % len(agents.LARGE_VEHICLES)]
  scene = scene_lib.sample_scene(
      rng, cfg['height'], cfg['width'], cfg['frames_per_sequence'],
      cfg['labeled_frame'], has_train=large == 'train')
  props = agents.sample_props(rng, scene, cfg['labeled_frame'], large)
  noise_seed = int(rng.integers(2**31))
  rendered = 0
  for frame, paths in files.items():
    if all(os.path.exists(p) for p in paths.values()):
      continue
    image, label, instance = render.render_frame(
        scene, props, frame, cfg['labeled_frame'], noise_seed)
    rendered += 1
    encoded = {'labelIds': encode_png(label),
               'instanceIds': encode_png(instance.astype(np.uint16))}
    image_png = encode_png(image)
    for key, path in paths.items():
      if os.path.exists(path):
        continue
      if key in ('image', 'sequence'):
        data = image_png
      elif key == 'color':
        data = encode_png(_COLOR_LUT[label])
      else:
        data = encoded[key.replace('hidden_', '')]
      file_io.atomic_write_bytes(path, data)
  return rendered


def _make_panoptic(gt_root: str, split: str, tmp_root: str) -> None:
  """Runs cityscapesscripts' createPanopticImgs for one split, atomically."""
  json_path, png_dir = layout.panoptic_paths(gt_root, split)
  if os.path.exists(json_path):
    return
  tmp = os.path.join(tmp_root, f'panoptic-{split}-{os.getpid()}')
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  with contextlib.redirect_stdout(io.StringIO()):
    createPanopticImgs.convert2panoptic(
        cityscapesPath=os.path.join(gt_root, 'gtFine'), outputFolder=tmp,
        setNames=[split])
  shutil.rmtree(png_dir, ignore_errors=True)
  os.replace(os.path.join(tmp, os.path.basename(png_dir)), png_dir)
  os.replace(os.path.join(tmp, os.path.basename(json_path)), json_path)
  shutil.rmtree(tmp)


def _readme(info: Mapping[str, Any]) -> str:
  return (
      'Synthetic street video in the Cityscapes layout (Naive-Student).\n'
      'Generated by data/make_synthetic_cityscapes.py; arguments in '
      f'{layout.INFO_FILE}.\n\n'
      f'{layout.__doc__}\n'
      f'Snippets: {info["split_sizes"]}, {info["frames_per_sequence"]} frames '
      f'of {info["height"]}x{info["width"]}, labeled frame '
      f'{info["labeled_frame"]}; {info["extra_images"]} extra images.\n')


def make_synthetic_cityscapes(
    out_dir: str, num_sequences: int, seed: int, height: int = 256,
    width: int = 512, frames_per_sequence: int = 30, labeled_frame: int = 19,
    extra_images: int = 0, split_sizes: Optional[Mapping[str, int]] = None,
    hidden_panoptic: bool = False,
    num_workers: Optional[int] = None) -> Dict[str, Any]:
  """Generates (or finishes) a synthetic Cityscapes-format video dataset.

  Args:
    out_dir: dataset root (created); see `layout` for what goes where.
    num_sequences: snippets over train and val.
    seed: fixes every byte of the output.
    height, width: frame size in pixels.
    frames_per_sequence: frames per snippet (Cityscapes: 30).
    labeled_frame: 0-based annotated frame in a snippet (Cityscapes: 19).
    extra_images: unlabeled single images in leftImg8bit/train_extra.
    split_sizes: e.g. {'train': 40, 'val': 10}, summing to num_sequences;
      default `layout.default_split_sizes`.
    hidden_panoptic: also run createPanopticImgs on hidden_gt (all frames);
      off by default: it is single-process and costs ~14 ms a 256x512 frame,
      a third of the whole run, and hidden_gt is a valid root without it.
    num_workers: processes (default: CPU count); 1 renders in this process.

  Returns:
    The dataset info written to `dataset_info.json`, plus `frames_rendered`
    (frames rendered by this call; 0 when everything already existed).

  Raises:
    ValueError: on inconsistent arguments, or if `out_dir` holds a dataset
      made with other arguments.
  """
  if split_sizes is None:
    split_sizes = layout.default_split_sizes(num_sequences)
  split_sizes = {s: int(split_sizes.get(s, 0)) for s in layout.SPLITS}
  if sum(split_sizes.values()) != num_sequences:
    raise ValueError(f'split_sizes {split_sizes} do not sum to '
                     f'num_sequences={num_sequences}')
  if not 0 <= labeled_frame < frames_per_sequence:
    raise ValueError(f'labeled_frame={labeled_frame} is not in '
                     f'[0, frames_per_sequence={frames_per_sequence})')
  if height < 16 or width < 16:
    raise ValueError(f'frame size {height}x{width} is below 16x16')
  info = {
      'generator_version': GENERATOR_VERSION, 'seed': int(seed),
      'num_sequences': int(num_sequences), 'split_sizes': split_sizes,
      'height': int(height), 'width': int(width),
      'frames_per_sequence': int(frames_per_sequence),
      'labeled_frame': int(labeled_frame), 'extra_images': int(extra_images),
      'hidden_panoptic': bool(hidden_panoptic),
      'cities': {s: list(c) for s, c in layout.CITIES.items()},
      'label_space': 'cityscapes label ids (gtFine labelIds/instanceIds)',
  }
  info_path = os.path.join(out_dir, layout.INFO_FILE)
  if os.path.exists(info_path):
    with open(info_path) as f:
      old = json.load(f)
    if old != info:
      raise ValueError(f'{info_path}: dataset was made with other arguments '
                       f'({old}); use another --out or delete it')
    if os.path.exists(os.path.join(out_dir, layout.DONE_FILE)):
      return dict(info, frames_rendered=0)
  file_io.atomic_write_bytes(info_path, json.dumps(info, indent=2, sort_keys=True)
                     .encode())
  file_io.atomic_write_bytes(os.path.join(out_dir, layout.README_FILE),
                     _readme(info).encode())

  cfg = dict(info)
  jobs = [(out_dir, s, cfg) for s in layout.snippets(split_sizes, extra_images)]
  # Longest jobs (whole snippets) first, for load balance.
  jobs.sort(key=lambda job: job[1].is_extra)
  num_workers = num_workers or os.cpu_count() or 1
  if num_workers > 1 and len(jobs) > 1:
    with multiprocessing.get_context('spawn').Pool(
        min(num_workers, len(jobs))) as pool:
      rendered = sum(pool.imap_unordered(_write_snippet, jobs))
  else:
    rendered = sum(_write_snippet(job) for job in jobs)

  tmp_root = os.path.join(out_dir, '.tmp')
  roots = [out_dir] + ([layout.hidden_gt_root(out_dir)] if hidden_panoptic
                       else [])
  for gt_root in roots:
    for split in layout.SPLITS:
      if split_sizes[split]:
        _make_panoptic(gt_root, split, tmp_root)
    if gt_root != out_dir and extra_images:
      _make_panoptic(gt_root, layout.EXTRA_SPLIT, tmp_root)
  shutil.rmtree(tmp_root, ignore_errors=True)
  file_io.atomic_write_bytes(os.path.join(out_dir, layout.DONE_FILE), b'done\n')
  info['frames_rendered'] = rendered
  return info


@gin.register
def ensure_synthetic_cityscapes(out_dir: str, num_sequences: int = 20,
                                seed: int = 0, height: int = 256,
                                width: int = 512, extra_images: int = 0,
                                split_sizes: Optional[Mapping[str, int]] = None,
                                frames_per_sequence: int = 30,
                                labeled_frame: int = 19) -> str:
  """Returns `out_dir`, generating the dataset there first if it is not complete.

  Gin files use it as the dataset root, so a demo's data appears on first use.
  """
  make_synthetic_cityscapes(out_dir, num_sequences, seed, height=height,
                            width=width, extra_images=extra_images,
                            split_sizes=dict(split_sizes) if split_sizes else None,
                            frames_per_sequence=frames_per_sequence,
                            labeled_frame=labeled_frame)
  return out_dir


@gin.register
def synthetic_hidden_gt_root(root: str) -> str:
  """`root`'s ground truth of every frame, for rating pseudo-labels in gin."""
  return layout.hidden_gt_root(root)
