"""Times cityscapes_eval against the three official evaluators on 1024x2048 frames.

Generates N frames of Cityscapes-format ground truth (labelIds, instanceIds and the
createPanopticImgs output) and imperfect predictions written by
`cityscapes_results`, then in one run times:
  * the official pixel, instance and panoptic evaluators (each a fresh process,
    as documented, the instance one without a ground-truth cache);
  * `python -m official_naive_student.evaluation.cityscapes_eval` on all three,
    in one process and in `--num_workers` processes (start-up included);
  * the decode floor: decoding, and nothing else, each PNG file that the official
    evaluators read, once (`official_png_files`: per frame gt labelIds,
    instanceIds and panoptic PNG, the semantic and panoptic predictions and the
    masks of evaluated labels), in one process and in a pool of the same size;
    once with PIL as the official scripts do, once with whichever decoder
    needs least CPU time for each kind of file (PIL, PIL into the array's
    memory as `png_io` does, OpenCV on one thread when installed);
checks that all give the same numbers, and prints a table.

  PYTHONPATH=. .venv/bin/python benchmarks/evaluator_benchmark.py --num_frames 20 \
      [--repeats 3] [--work_dir DIR]

On a shared machine use --repeats: load comes in bursts, and each row keeps its
fastest round.
"""

import json
import multiprocessing
import os
import resource
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
from official_naive_student.evaluation import instance_ap
from official_naive_student.evaluation import official_scripts
from official_naive_student.evaluation import png_io

try:  # Only for the "fastest decoder" floor.
  import cv2  # pylint: disable=g-import-not-at-top
except ImportError:
  cv2 = None

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_frames', 20, 'Frames of 1024x2048.')
flags.DEFINE_integer('num_workers', 2, 'Processes for cityscapes_eval.')
flags.DEFINE_integer('repeats', 1, 'Rounds of all timings; each row keeps its '
                     'fastest round.')
flags.DEFINE_string('work_dir', None, 'Where to write data (default: a temp dir, '
                    'removed after). Data already there is reused.')

DS = datasets.CITYSCAPES
H, W = 1024, 2048
LUT = DS.label_id_to_train_id_lut()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Timer:
  """Wall-clock and CPU seconds (this process plus its reaped children).

  CPU seconds are the fairer measure on a shared machine, where wall-clock
  time also counts the waits for other people's processes.
  """

  def __enter__(self):
    self._start = self._now()
    return self

  def __exit__(self, *exc):
    end = self._now()
    self.wall, self.cpu = end[0] - self._start[0], end[1] - self._start[1]

  @staticmethod
  def _now():
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.perf_counter(),
            time.process_time() + children.ru_utime + children.ru_stime)


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
  """Runs the three official evaluators; returns ({name: Timer}, metrics)."""
  jobs = official_scripts.commands(
      root, 'val', work, writer.semantic_dir, writer.instance_dir,
      writer.panoptic_json, writer.panoptic_dir)
  names = {official_scripts.PIXEL: 'pixel (mIoU)',
           official_scripts.INSTANCE: 'instance (AP)',
           official_scripts.PANOPTIC: 'panoptic (PQ)'}
  cache = os.path.join(work, 'gtInstances.json')
  times, results = {}, {}
  for kind, (cmd, job_env, out) in jobs.items():
    if os.path.exists(cache):
      os.remove(cache)
    with Timer() as timer:
      subprocess.run(cmd, env=job_env, cwd=work, check=True,
                     stdout=subprocess.DEVNULL)
    times[names[kind]] = (timer.wall, timer.cpu)
    with open(out) as f:
      results[kind] = json.load(f)
  return times, official_scripts.metrics(results)


def official_png_files(root, writer):
  """(kind, path) of every PNG file the official evaluators read, each once.

  Per frame: the pixel evaluator's prediction, gt labelIds and gt instanceIds
  (for its iIoU); the instance evaluator's gt instanceIds (the same file) and
  the masks of the txt lines with an evaluated label; the panoptic evaluator's
  gt and predicted panoptic PNGs named in the two jsons. Not read by them:
  `_color.png`, masks of other labels.
  """
  tasks = cityscapes_eval.frame_tasks(
      root, 'val', writer.semantic_dir, writer.instance_dir,
      writer.panoptic_json, writer.panoptic_dir, DS)
  files = []
  for task in tasks:
    files += [('gt labelIds', task['gt_semantic']),
              ('gt instanceIds', task['gt_instance']),
              ('gt panoptic', task['gt_panoptic']),
              ('semantic', task['semantic']), ('panoptic', task['panoptic'])]
    files += [('mask', path) for path, label_id, _ in
              cityscapes_eval.read_instance_txt(task['instance'],
                                                task['instance_root'])
              if label_id in instance_ap.INSTANCE_LABEL_IDS]
  return files


def _decode_pil(path):
  """What the official scripts do: np.array(Image.open(path))."""
  return np.asarray(Image.open(path)).shape


def _decode_pil_direct(path):
  """PIL decoding into the array's memory, without `tobytes` (png_io)."""
  with Image.open(path) as image:
    array = png_io.decode_into_array(image)
    return (array if array is not None else np.asarray(image)).shape


def _decode_cv2(path):
  return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED).shape


DECODERS = {'pil': _decode_pil, 'pil-direct': _decode_pil_direct}
if cv2 is not None:
  cv2.setNumThreads(1)  # One core per process, like the other decoders.
  DECODERS['cv2'] = _decode_cv2


def _decode(item):
  decoder, path = item
  return DECODERS[decoder](path)


def fastest_decoders(files, repeats=3):
  """{kind: decoder name}, whichever needs least CPU time on a sample."""
  choice = {}
  for kind in dict(files):
    sample = [p for k, p in files if k == kind][:8]
    best = {}
    for name in DECODERS:
      times = []
      for _ in range(repeats):
        start = time.process_time()
        for path in sample:
          _decode((name, path))
        times.append(time.process_time() - start)
      best[name] = min(times)
    choice[kind] = min(best, key=best.get)
  return choice


def time_decoding(items, num_workers):
  """(wall, CPU) seconds to decode [(decoder, path)] in one process or a pool."""
  with Timer() as timer:
    if num_workers == 1:
      for item in items:
        _decode(item)
    else:
      with multiprocessing.Pool(num_workers) as pool:
        pool.map(_decode, items, chunksize=8)
  return timer.wall, timer.cpu


def time_ours(root, writer, work, num_workers):
  """((wall, CPU) seconds, metrics) of the command line, start-up included."""
  out_json = os.path.join(work, f'ours-{num_workers}.json')
  with Timer() as timer:
    subprocess.run(
        [sys.executable, '-m',
         'official_naive_student.evaluation.cityscapes_eval',
         '--gt_root', root, '--semantic_dir', writer.semantic_dir,
         '--instance_dir', writer.instance_dir, '--panoptic_json',
         writer.panoptic_json, '--panoptic_dir', writer.panoptic_dir,
         '--output_json', out_json, f'--num_workers={num_workers}'],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  with open(out_json) as f:
    return (timer.wall, timer.cpu), json.load(f)


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
  workers = FLAGS.num_workers
  files = official_png_files(root, writer)
  choice = fastest_decoders(files)
  items = {'pil': [('pil', p) for _, p in files],
           'best': [(choice[k], p) for k, p in files]}
  # Every round times everything, one after the other; each row keeps its
  # best round, so that a burst of load on a shared machine hits all alike.
  best_times = {}
  for _ in range(FLAGS.repeats):
    official_times, official = run_official(root, writer, work)
    times = dict(official_times)
    times['ours', 1], ours = time_ours(root, writer, work, 1)
    times['ours', workers], ours_pool = time_ours(root, writer, work, workers)
    for name, decode_items in items.items():
      for w in (1, workers):
        times[name, w] = time_decoding(decode_items, w)
    for key, (wall, cpu) in times.items():
      old = best_times.get(key, (wall, cpu))
      best_times[key] = (min(wall, old[0]), min(cpu, old[1]))
  total = tuple(sum(best_times[k][i] for k in official_times) for i in (0, 1))

  print(f'\n{n} frames of {H}x{W}, {len(files)} PNG files read by the official '
        f'evaluators, {os.cpu_count()} cores, best of {FLAGS.repeats} rounds; '
        'fastest decoder per kind: ' +
        ', '.join(f'{k} {v}' for k, v in choice.items()))
  print(f'{"what":<54}{"wall s":>8}{"s/frame":>8}{"CPU s":>8}{"s/frame":>8}')
  rows = [(k, best_times[k]) for k in official_times] + [
      ('official, all three', total),
      ('cityscapes_eval, all three (1 process)', best_times['ours', 1]),
      (f'cityscapes_eval, all three ({workers} processes)',
       best_times['ours', workers]),
      ('decode those PNGs, PIL (1 process)', best_times['pil', 1]),
      (f'decode those PNGs, PIL ({workers} processes)',
       best_times['pil', workers]),
      ('decode those PNGs, fastest decoder (1 process)', best_times['best', 1]),
      (f'decode those PNGs, fastest decoder ({workers} processes)',
       best_times['best', workers])]
  for name, (wall, cpu) in rows:
    print(f'{name:<54}{wall:8.2f}{wall / n:8.3f}{cpu:8.2f}{cpu / n:8.3f}')
  for i, what in enumerate(('wall', 'CPU')):
    ours_1, ours_n = best_times['ours', 1][i], best_times['ours', workers][i]
    print(f'{what}: speed-up vs official {total[i] / ours_n:.1f}x ({workers} '
          f'processes), {total[i] / ours_1:.1f}x (1 process); ours / decode '
          f'PIL {ours_1 / best_times["pil", 1][i]:.2f}x, '
          f'{ours_n / best_times["pil", workers][i]:.2f}x; ours / decode '
          f'fastest {ours_1 / best_times["best", 1][i]:.2f}x, '
          f'{ours_n / best_times["best", workers][i]:.2f}x (1, {workers} '
          'processes)')
  diffs = [abs(result[k] - official[k]) for result in (ours, ours_pool)
           for k in official]
  print('max |ours - official| over ' + ', '.join(official) +
        f': {max(diffs):.2e} points')
  if FLAGS.work_dir is None:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
