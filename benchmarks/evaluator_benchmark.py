"""Times cityscapes_eval against the three official evaluators on 1024x2048 frames.

Generates N frames of Cityscapes-format ground truth (labelIds, instanceIds and the
createPanopticImgs output) and imperfect predictions written by
`cityscapes_results`, then in one run times:
  * the official pixel, instance and panoptic evaluators (each a fresh process,
    as documented, the instance one without a ground-truth cache);
  * `python -m official_naive_student.evaluation.cityscapes_eval` on all three;
  * decoding the same PNG files alone (one process, and a pool of the same size);
checks that both give the same numbers, and prints a table.

  .venv/bin/python benchmarks/evaluator_benchmark.py --num_frames 20
"""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from official_naive_student import datasets
from official_naive_student.evaluation import cityscapes_eval
from official_naive_student.evaluation import cityscapes_results

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_frames', 20, 'Frames of 1024x2048.')
flags.DEFINE_integer('num_workers', 2, 'Processes for cityscapes_eval.')
flags.DEFINE_string('work_dir', None, 'Where to write data (default: a temp dir, '
                    'removed after). Data already there is reused.')

DS = datasets.CITYSCAPES
H, W = 1024, 2048
LUT = DS.label_id_to_train_id_lut()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blob(rng, h, w, top, bottom):
  """A mask of an axis-aligned ellipse-ish object of about h x w pixels."""
  y = int(rng.integers(top, bottom - h))
  x = int(rng.integers(0, W - w))
  yy, xx = np.ogrid[:h, :w]
  shape = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 4 <= 1
  return (slice(y, y + h), slice(x, x + w)), shape


def make_gt(rng):
  """[H, W] instanceIds with stuff bands, void, ~30 instances and groups."""
  inst = np.full((H, W), 23, np.int32)
  inst[250:520] = 11
  for _ in range(6):
    x = int(rng.integers(0, W - 300))
    inst[200 + int(rng.integers(0, 100)):560, x:x + int(rng.integers(80, 300))] = 21
  inst[520:] = 7
  inst[600:, :400] = 8
  for _ in range(8):
    x = int(rng.integers(0, W - 10))
    inst[300:620, x:x + 8] = 17
    inst[280:320, x - 20:x + 28] = 20
  inst[900:] = 1
  inst[:, :6] = 0
  inst[500:520, 900:1300] = 9
  counters = {}
  things = ([(26, 120, 260)] * 10 + [(24, 180, 60)] * 10 + [(25, 170, 70)] * 3
            + [(33, 90, 120)] * 3 + [(27, 200, 400)] + [(28, 260, 500)]
            + [(24, 8, 8)] * 2 + [(29, 150, 300)])
  for label_id, h, w in things:
    (rows, cols), shape = _blob(rng, h, w, 420, 900)
    k = counters.get(label_id, 0)
    counters[label_id] = k + 1
    inst[rows, cols][shape] = label_id * 1000 + k
  for label_id in (26, 24):
    (rows, cols), shape = _blob(rng, 150, 400, 420, 900)
    inst[rows, cols][shape] = label_id
  return inst


def make_prediction(gt, rng):
  """(panoptic ids, scores): shifted, missed, re-classed and spurious instances."""
  label = np.where(gt < 1000, gt, gt // 1000)
  train = LUT[label].astype(np.int64)
  thing = gt >= 1000
  pan = np.where(thing, 0, train) * 1000
  pan[train == 255] = 255000
  scores, next_id = {}, 1
  for n, v in enumerate(np.unique(gt[thing])):
    train_id = int(LUT[v // 1000]) if LUT[v // 1000] != 255 else 13
    if n % 7 == 0:
      continue
    if n % 7 == 1:
      train_id = 14 if train_id == 13 else 12
    dy, dx = rng.integers(-8, 9, size=2)
    mask = np.roll(gt == v, (int(dy), int(dx)), axis=(0, 1))
    pid = train_id * 1000 + next_id
    next_id += 1
    pan[mask] = pid
    scores[pid] = float(np.round(rng.uniform(0.05, 1.0), 3))
  for _ in range(3):
    (rows, cols), shape = _blob(rng, 150, 60, 530, 890)
    pid = 11000 + next_id
    next_id += 1
    pan[rows, cols][shape] = pid
    scores[pid] = float(np.round(rng.uniform(0.05, 1.0), 3))
  return pan, scores


def generate(root, results, num_frames):
  rng = np.random.default_rng(0)
  writer = cityscapes_results.ResultsWriter(
      os.path.join(results, 'semantic'), os.path.join(results, 'instance'),
      os.path.join(results, 'panoptic'))
  for i in range(num_frames):
    city = ('frankfurt', 'lindau', 'munster')[i % 3]
    image_id = f'{city}_{i:06d}_000019'
    gt = make_gt(rng)
    city_dir = os.path.join(root, 'gtFine', 'val', city)
    os.makedirs(city_dir, exist_ok=True)
    base = os.path.join(city_dir, f'{image_id}_gtFine_')
    Image.fromarray(gt.astype(np.uint16)).save(base + 'instanceIds.png')
    Image.fromarray(np.where(gt < 1000, gt, gt // 1000).astype(np.uint8)).save(
        base + 'labelIds.png')
    pan, scores = make_prediction(gt, rng)
    writer.write(image_id, semantic=pan // 1000, panoptic=pan, scores=scores)
  writer.close()
  from cityscapesscripts.preparation import createPanopticImgs  # pylint: disable=g-import-not-at-top
  createPanopticImgs.convert2panoptic(os.path.join(root, 'gtFine'),
                                      setNames=['val'])
  return writer


def run_official(root, writer, work):
  """Runs the three official evaluators; returns ({name: seconds}, metrics)."""
  env = dict(os.environ, CITYSCAPES_DATASET=root, CITYSCAPES_EXPORT_DIR=work)
  cache = os.path.join(work, 'gtInstances.json')
  pan_out = os.path.join(work, 'panoptic.json')
  jobs = {
      'pixel (mIoU)': ([sys.executable, '-m', 'cityscapesscripts.evaluation.'
                        'evalPixelLevelSemanticLabeling'],
                       dict(env, CITYSCAPES_RESULTS=writer.semantic_dir)),
      'instance (AP)': ([sys.executable, '-c', 'import cityscapesscripts.'
                         'evaluation.evalInstanceLevelSemanticLabeling as m;'
                         f'm.args.gtInstancesFile={cache!r}; m.main()'],
                        dict(env, CITYSCAPES_RESULTS=writer.instance_dir)),
      'panoptic (PQ)': ([sys.executable, '-m', 'cityscapesscripts.evaluation.'
                         'evalPanopticSemanticLabeling', '--gt-json-file',
                         os.path.join(root, 'gtFine',
                                      'cityscapes_panoptic_val.json'),
                         '--prediction-json-file', writer.panoptic_json,
                         '--prediction-folder', writer.panoptic_dir,
                         '--results_file', pan_out], env),
  }
  times = {}
  for name, (cmd, job_env) in jobs.items():
    if os.path.exists(cache):
      os.remove(cache)
    start = time.perf_counter()
    subprocess.run(cmd, env=job_env, cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    times[name] = time.perf_counter() - start
  pixel = json.load(open(os.path.join(work, 'resultPixelLevelSemanticLabeling.json')))
  inst = json.load(open(os.path.join(
      root, 'evaluationResults', 'resultInstanceLevelSemanticLabeling.json')))
  pan = json.load(open(pan_out))
  metrics = {'PQ': pan['All']['pq'], 'SQ': pan['All']['sq'],
             'RQ': pan['All']['rq'], 'PQ_things': pan['Things']['pq'],
             'PQ_stuff': pan['Stuff']['pq'],
             'mIoU': pixel['averageScoreClasses'],
             'AP': inst['averages']['allAp'],
             'AP50': inst['averages']['allAp50%']}
  return times, {k: v * 100 for k, v in metrics.items()}


def png_files(root, writer):
  """Every PNG the evaluators read."""
  files = []
  for dirpath, _, names in os.walk(os.path.join(root, 'gtFine')):
    files += [os.path.join(dirpath, n) for n in names if n.endswith('.png')
              and not n.endswith('_color.png')]
  for folder in (writer.semantic_dir, writer.instance_dir, writer.panoptic_dir):
    for dirpath, _, names in os.walk(folder):
      files += [os.path.join(dirpath, n) for n in names if n.endswith('.png')]
  return files


def _decode(path):
  return np.asarray(Image.open(path)).shape


def main(argv):
  del argv
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='evaluator_benchmark_')
  root, results = os.path.join(work, 'cityscapes'), os.path.join(work, 'results')
  n = FLAGS.num_frames
  marker = os.path.join(work, f'frames-{n}')
  if os.path.exists(marker):
    writer = cityscapes_results.ResultsWriter(
        os.path.join(results, 'semantic'), os.path.join(results, 'instance'),
        os.path.join(results, 'panoptic'))
  else:
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    start = time.perf_counter()
    writer = generate(root, results, n)
    open(marker, 'w').close()
    print(f'generated {n} frames in {time.perf_counter() - start:.1f} s')
  official_times, official = run_official(root, writer, work)

  start = time.perf_counter()
  out_json = os.path.join(work, 'ours.json')
  subprocess.run(
      [sys.executable, '-m', 'official_naive_student.evaluation.cityscapes_eval',
       '--gt_root', root, '--semantic_dir', writer.semantic_dir,
       '--instance_dir', writer.instance_dir, '--panoptic_json',
       writer.panoptic_json, '--panoptic_dir', writer.panoptic_dir,
       '--output_json', out_json, f'--num_workers={FLAGS.num_workers}'],
      cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  ours_time = time.perf_counter() - start
  ours = json.load(open(out_json))

  files = png_files(root, writer)
  start = time.perf_counter()
  for f in files:
    _decode(f)
  decode_time = time.perf_counter() - start
  start = time.perf_counter()
  with multiprocessing.Pool(FLAGS.num_workers) as pool:
    pool.map(_decode, files, chunksize=8)
  decode_pool_time = time.perf_counter() - start

  official_total = sum(official_times.values())
  print(f'\n{n} frames of {H}x{W}, {len(files)} PNG files, '
        f'{os.cpu_count()} cores')
  print(f'{"what":<44}{"s total":>9}{"s/frame":>9}')
  rows = list(official_times.items()) + [
      ('official, all three', official_total),
      (f'cityscapes_eval, all three ({FLAGS.num_workers} processes)', ours_time),
      ('decode the same PNGs (1 process)', decode_time),
      (f'decode the same PNGs ({FLAGS.num_workers} processes)', decode_pool_time)]
  for name, seconds in rows:
    print(f'{name:<44}{seconds:9.2f}{seconds / n:9.3f}')
  print(f'speed-up vs official: {official_total / ours_time:.1f}x; '
        f'ours / decode (1 process): {ours_time / decode_time:.2f}x, '
        f'(pool): {ours_time / decode_pool_time:.2f}x')
  diffs = {k: abs(ours[k] - official[k]) for k in official}
  print('max |ours - official| over ' + ', '.join(official) +
        f': {max(diffs.values()):.2e} points')
  if FLAGS.work_dir is None:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
