"""Dropout and drop-path masks: right rates, and their own masks on each replica.

Under MirroredStrategy every replica reads the same seed-generator state, so
Keras' own layers give every replica the same mask; the multi-replica check
runs in a subprocess, which can still split the CPU into two logical devices.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import official_naive_student
from official_naive_student.modeling.layers import blocks
from official_naive_student.modeling.layers import replica_random

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(
    official_naive_student.__file__)))


def test_dropout_rate_scaling_and_inference():
  layer = replica_random.Dropout(0.25, seed=3)
  x = tf.ones((64, 64))
  np.testing.assert_array_equal(layer(x, training=False), x)
  y = layer(x, training=True).numpy()
  assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
  assert abs((y == 0).mean() - 0.25) < 0.03
  assert not np.array_equal(y, layer(x, training=True).numpy())  # New draws.
  config = replica_random.Dropout.from_config(layer.get_config()).get_config()
  assert config['rate'] == 0.25 and config['seed'] == 3
  with pytest.raises(ValueError, match='rate'):
    replica_random.Dropout(1.0)
  np.testing.assert_array_equal(replica_random.Dropout(0.0)(x, training=True), x)


def test_drop_path_drops_whole_samples():
  layer = blocks.DropPath(0.5, seed=1)
  y = layer(tf.ones((256, 3, 3, 2)), training=True).numpy()
  per_sample = y.reshape(256, -1)
  assert (per_sample.min(1) == per_sample.max(1)).all()
  assert set(np.unique(y)) == {0.0, 2.0}
  assert abs((per_sample[:, 0] == 0).mean() - 0.5) < 0.1


_TWO_REPLICAS = textwrap.dedent('''
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from official_naive_student.modeling.layers import blocks, replica_random
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
      layers = [blocks.DropPath(0.5, seed=1), replica_random.Dropout(0.5, seed=1)]
    x = tf.ones((64, 1))

    @tf.function
    def step():
      return strategy.run(lambda: [l(x, training=True) for l in layers])

    steps = [[[r.numpy() for r in strategy.experimental_local_results(m)]
              for m in step()] for _ in range(3)]
    for layer in range(2):
      masks = [steps[t][layer][r] for t in range(3) for r in range(2)]
      distinct = {m.tobytes() for m in masks}
      print(len(distinct))
''')


def test_each_replica_draws_its_own_masks():
  out = subprocess.run([sys.executable, '-c', _TWO_REPLICAS], cwd=_REPO,
                       env={**os.environ, 'PYTHONPATH': _REPO,
                            'CUDA_VISIBLE_DEVICES': ''},
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  # 3 steps x 2 replicas: 6 different masks per layer (no replica repeats
  # another's, nor one of its own earlier steps).
  assert out.stdout.split() == ['6', '6']
