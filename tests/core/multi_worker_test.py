"""Two MultiWorkerMirroredStrategy workers on localhost train like one process.

The test starts two worker processes (this file run as a script) with a
TF_CONFIG naming both, and a third process with the default strategy. All three
train a tiny Panoptic-DeepLab (preset 'tiny') through `Trainer` and
`PanopticDeepLabTask` for a few steps on the same seeded global batches of 4:
each worker (one CPU replica) reads its half of every global batch, the single
process all of it. With batch norm synchronized across replicas and gradients
summed over replicas, both workers must end with the same weights (BN moving
statistics included) as the single process, up to float round-off.

The worker entry point needs no pytest:
  PYTHONPATH=. TF_CONFIG=... python tests/core/multi_worker_test.py \
      --kind multi_worker_mirrored --model_dir DIR --out WEIGHTS.npz
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student.core import distribute
from official_naive_student.core import trainer as trainer_lib
from official_naive_student.modeling import presets
from official_naive_student.tasks import panoptic_deeplab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NUM_WORKERS = 2
GLOBAL_BATCH = 4
CROP = (33, 33)
NUM_STEPS = 3
LEARNING_RATE = 1e-3
SEED = 1234
# Generous: a loaded 2-core machine took 171 s; a crashed process fails at once.
TIMEOUT_S = 480
# Adam moves every weight by about the learning rate per step whatever the
# gradient's size, so a gradient component near zero whose round-off differs
# between a split and a whole batch can move its weight by a few percent of the
# learning rate (observed: 2.4e-5 on 5 of 736k values). The tolerance is 10 % of
# one step; a real difference (BN not synchronized, other data, dropout masks)
# moves most weights by about the learning rate. The mean catches small
# differences spread over all weights.
RTOL, ATOL = 1e-4, 0.1 * LEARNING_RATE
MEAN_ATOL = 1e-6


class FakeTrainData:
  """Seeded random panoptic targets; each input pipeline reads its share.

  Example i of the stream depends on i alone and global batch s holds examples
  [s * G, (s + 1) * G). With n input pipelines, pipeline p reads the p-th
  contiguous n-th of every global batch (the examples its replicas consume), so
  any number of workers trains on the same global batches as one process.
  """

  def __init__(self, global_batch_size=GLOBAL_BATCH, crop_size=CROP,
               num_classes=19, ignore_label=255):
    self.global_batch_size = global_batch_size
    self.crop_size = crop_size
    self._num_classes = num_classes
    self._ignore_label = ignore_label

  def _example(self, i):
    h, w = self.crop_size
    seed = tf.stack([tf.constant(SEED, tf.int64), i * 8])
    semantic = tf.random.stateless_uniform(
        [h, w], seed, 0, self._num_classes, tf.int32)
    void = tf.random.stateless_uniform([h, w], seed + 1) < 0.1
    small = tf.random.stateless_uniform([h, w], seed + 2) < 0.2
    labels = {
        common.GT_SEMANTIC: tf.where(void, self._ignore_label, semantic),
        common.GT_SEMANTIC_WEIGHTS: tf.where(small, 3.0, 1.0),
        common.GT_CENTER_HEATMAP: tf.random.stateless_uniform(
            [h, w, 1], seed + 3),
        common.GT_CENTER_WEIGHTS: tf.cast(tf.logical_not(void), tf.float32),
        common.GT_OFFSET: tf.random.stateless_normal([h, w, 2], seed + 4) * 5,
        common.GT_OFFSET_WEIGHTS: tf.cast(
            tf.random.stateless_uniform([h, w], seed + 5) < 0.5, tf.float32),
    }
    image = tf.random.stateless_uniform([h, w, 3], seed + 6, 0, 255)
    return {common.IMAGE: image}, labels

  def dataset_fn(self, input_context=None, start_step=0):
    g = self.global_batch_size
    n = input_context.num_input_pipelines if input_context else 1
    p = input_context.input_pipeline_id if input_context else 0
    b = input_context.get_per_replica_batch_size(g) if input_context else g
    share = g // n
    ds = tf.data.Dataset.range(start_step * g, 10**6)
    ds = ds.filter(lambda i: (i % g) // share == p)
    return ds.map(self._example).batch(b, drop_remainder=True)


def tiny_model_without_dropout(num_classes):
  """The 'tiny' preset with its ASPP dropout off.

  Dropout masks depend on how a batch is split over replicas (each replica draws
  masks for its own examples), so with dropout no multi-replica run equals a
  single-replica one. The tiny Wide-ResNet has no drop path.
  """
  model = presets.build_panoptic_deeplab('tiny', num_classes=num_classes)
  for decoder in (model.semantic_decoder, model.instance_decoder):
    decoder.aspp.dropout.rate = 0.0
  return model


def _weights(model):
  return {f'{i:04d}:{v.path}': v.numpy() for i, v in enumerate(model.weights)}


def worker_main(argv=None) -> int:
  """Trains the tiny model under strategy `--kind`; writes weights and a report.

  Writes OUT (final weights), OUT minus '.npz' plus '_init.npz' (weights before
  training) and '.json' (step, chief, replicas, last losses).
  """
  parser = argparse.ArgumentParser()
  parser.add_argument('--kind', required=True, choices=distribute.STRATEGIES)
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--out', required=True)
  args = parser.parse_args(argv)
  stem = args.out[:-len('.npz')] if args.out.endswith('.npz') else args.out

  # One thread per op: three processes share the test machine's cores.
  tf.config.threading.set_intra_op_parallelism_threads(1)
  # Collective ops are configured when the strategy is built, before any op.
  strategy = distribute.build_strategy(args.kind)
  tf.keras.utils.set_random_seed(SEED)
  task = panoptic_deeplab.PanopticDeepLabTask(
      train_data=FakeTrainData, model_fn=tiny_model_without_dropout)
  trainer = trainer_lib.Trainer(
      task, args.model_dir, num_steps=NUM_STEPS, strategy=strategy,
      learning_rate=LEARNING_RATE, checkpoint_every=2, summary_every=1)
  initial = _weights(trainer.model)
  losses = trainer.train()
  np.savez(stem + '.npz', **_weights(trainer.model))
  np.savez(stem + '_init.npz', **initial)
  with open(stem + '.json', 'w') as f:
    json.dump({'step': trainer.step, 'is_chief': trainer.is_chief,
               'num_replicas': strategy.num_replicas_in_sync,
               'losses': losses}, f)
  return 0


def _free_ports(n):
  sockets = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(('localhost', 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _tail(path, n=3000):
  with open(path, errors='replace') as f:
    return f.read()[-n:]


def _run_all(jobs, log_dir):
  """Runs (name, argv, env) jobs at once; fails fast on an error or timeout.

  A dead worker leaves the other one blocked in a collective, so the first
  failure (or the deadline) kills every process still running.
  """
  procs = {}
  try:
    for name, argv, env in jobs:
      # pylint: disable-next=consider-using-with
      log = open(log_dir / f'{name}.log', 'w')
      procs[name] = (subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT), log)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
      codes = {name: p.poll() for name, (p, _) in procs.items()}
      failed = [name for name, code in codes.items() if code not in (None, 0)]
      if failed:
        raise AssertionError(f'{failed[0]} exited with {codes[failed[0]]}:\n'
                             f'{_tail(log_dir / f"{failed[0]}.log")}')
      if all(code == 0 for code in codes.values()):
        return
      if time.monotonic() > deadline:
        raise AssertionError(
            f'timed out after {TIMEOUT_S} s; logs:\n' + '\n'.join(
                f'--- {name}\n{_tail(log_dir / f"{name}.log")}'
                for name in procs))
      time.sleep(0.2)
  finally:
    for p, log in procs.values():
      if p.poll() is None:
        p.kill()
        p.wait()
      log.close()


def _load(path):
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def test_two_workers_match_one_process(tmp_path):
  cluster = {'worker': [f'localhost:{port}'
                        for port in _free_ports(NUM_WORKERS)]}
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join(
                 [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  env.pop('TF_CONFIG', None)

  def job(name, kind, model_dir, **extra_env):
    argv = [sys.executable, os.path.abspath(__file__), '--kind', kind,
            '--model_dir', str(tmp_path / model_dir),
            '--out', str(tmp_path / f'{name}.npz')]
    return name, argv, dict(env, **extra_env)

  workers = [f'worker_{i}' for i in range(NUM_WORKERS)]
  jobs = [job(name, 'multi_worker_mirrored', 'multi', TF_CONFIG=json.dumps(
      {'cluster': cluster, 'task': {'type': 'worker', 'index': i}}))
          for i, name in enumerate(workers)]
  jobs.append(job('single', 'default', 'single'))
  _run_all(jobs, tmp_path)

  reports = {}
  for name in workers + ['single']:
    with open(tmp_path / f'{name}.json') as f:
      reports[name] = json.load(f)
    assert reports[name]['step'] == NUM_STEPS, (name, reports[name])
    assert all(np.isfinite(v) for v in reports[name]['losses'].values())
  assert [reports[w]['num_replicas'] for w in workers] == [NUM_WORKERS] * 2
  assert [reports[w]['is_chief'] for w in workers] == [True, False]
  assert reports['single']['num_replicas'] == 1

  single = _load(tmp_path / 'single.npz')
  initial = _load(tmp_path / 'single_init.npz')
  assert _load(tmp_path / 'worker_0_init.npz').keys() == initial.keys()
  # Training moved the trained weights far beyond the tolerance.
  moved = max(float(np.max(np.abs(single[k] - initial[k])))
              for k in single if '/moving_' not in k)
  assert moved > 10 * ATOL
  chief = _load(tmp_path / 'worker_0.npz')
  for name in workers:
    weights = _load(tmp_path / f'{name}.npz')
    assert sorted(weights) == sorted(single), name
    diff = np.concatenate([np.abs(weights[k] - single[k]).ravel()
                           for k in single])
    summary = (f'{name} vs one process: max |diff| {diff.max():.3g}, mean '
               f'{diff.mean():.3g}, {np.sum(diff > ATOL)} of {diff.size} '
               f'values above {ATOL:g}; max |trained - initial| {moved:.3g}')
    print(summary)
    for key in sorted(single):
      np.testing.assert_allclose(weights[key], single[key], rtol=RTOL,
                                 atol=ATOL, err_msg=f'{key}; {summary}')
    assert diff.mean() < MEAN_ATOL, summary
    # Both workers apply the same all-reduced gradients to mirrored variables.
    for key in sorted(single):
      np.testing.assert_allclose(weights[key], chief[key], rtol=1e-6,
                                 atol=1e-7, err_msg=f'{name}: {key}')
  # The chief wrote the checkpoints; the other worker's scratch copy is gone.
  state = tf.train.get_checkpoint_state(
      str(tmp_path / 'multi' / trainer_lib.CHECKPOINT_SUBDIR))
  assert state.model_checkpoint_path.endswith(f'ckpt-{NUM_STEPS}')
  assert not (tmp_path / 'multi' / 'workers' / 'worker_1').exists()


if __name__ == '__main__':
  sys.exit(worker_main())
