"""The only place a `tf.distribute.Strategy` is created.

Follows DeepLab2's `trainer/distribution_utils.py`: the strategy kind is a config
value, so the same gin file runs on one CPU, several GPUs, several GPU workers
(TF_CONFIG) or a TPU.
"""

import json
import os
from typing import Optional

from absl import logging
import gin
import tensorflow as tf

STRATEGIES = ('default', 'one_device', 'mirrored', 'multi_worker_mirrored', 'tpu')
# Strategies built so far: a chain's stages share one (a TPU system is
# initialized, and multi-worker collectives are configured, once per process).
_BUILT = {}


@gin.register
def build_strategy(kind: str = 'default',
                   tpu: Optional[str] = None,
                   num_gpus: Optional[int] = None,
                   all_reduce: str = 'auto') -> tf.distribute.Strategy:
  """Builds the distribution strategy named by `kind`.

  Args:
    kind: one of STRATEGIES. 'default' is TF's default strategy (one device, no
      replica context wrapping); 'multi_worker_mirrored' reads the cluster from
      the TF_CONFIG environment variable.
    tpu: TPU name or grpc address for 'tpu' ('' or 'local' for a TPU VM).
    num_gpus: GPUs for 'mirrored' (None: all visible GPUs, or the CPU if none).
    all_reduce: 'auto', 'ring' or 'nccl' collective implementation for
      'multi_worker_mirrored'.

  Returns:
    The strategy; the same object for the same arguments within a process.
  """
  if kind not in STRATEGIES:
    raise ValueError(f'strategy kind {kind!r} is not one of {STRATEGIES}')
  if kind == 'default':
    return tf.distribute.get_strategy()
  key = (kind, tpu, num_gpus, all_reduce)
  if key not in _BUILT:
    _BUILT[key] = _new_strategy(kind, tpu, num_gpus, all_reduce)
  return _BUILT[key]


def _new_strategy(kind, tpu, num_gpus, all_reduce) -> tf.distribute.Strategy:
  if kind == 'one_device':
    device = '/gpu:0' if tf.config.list_logical_devices('GPU') else '/cpu:0'
    return tf.distribute.OneDeviceStrategy(device)
  if kind == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    if num_gpus is not None:
      gpus = gpus[:num_gpus]
    devices = [d.name for d in gpus] or ['/cpu:0']
    return tf.distribute.MirroredStrategy(devices)
  if kind == 'multi_worker_mirrored':
    if 'TF_CONFIG' in os.environ:
      cluster = json.loads(os.environ['TF_CONFIG']).get('cluster', {})
      logging.info('MultiWorkerMirroredStrategy over %s', cluster)
    implementation = {
        'auto': tf.distribute.experimental.CommunicationImplementation.AUTO,
        'ring': tf.distribute.experimental.CommunicationImplementation.RING,
        'nccl': tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[all_reduce]
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation))
  # kind == 'tpu'
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or '')
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes checkpoints, summaries and files."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, 'chief') or (task_type == 'worker' and task_id == 0)
