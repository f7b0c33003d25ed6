r"""Throughput of training augmentation + target encoding in a tf.data pipeline.

Builds one synthetic Cityscapes-sized example (1024x2048 uint8 image, panoptic
map with `--num_instances` car/person boxes on road), then measures images/s of

  * `targets`: `encode_targets` alone on 512x1024 crops of it;
  * `pipeline`: `preprocess_for_training` (scale 0.5-2.0, crop 512x1024, flip)
    followed by `encode_targets`, mapped with AUTOTUNE parallelism;

each as a `tf.data.Dataset` of per-example seeds, after `--warmup` elements.

  python benchmarks/input_targets_benchmark.py --num_images=40
"""

import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from official_naive_student import common
from official_naive_student.dataloaders import augment
from official_naive_student.dataloaders import targets

_NUM_IMAGES = flags.DEFINE_integer('num_images', 40, 'Timed images per mode.')
_WARMUP = flags.DEFINE_integer('warmup', 4, 'Untimed images per mode.')
_NUM_INSTANCES = flags.DEFINE_integer('num_instances', 30, 'Instances.')
_CROP = flags.DEFINE_list('crop_size', ['512', '1024'], 'Crop height, width.')

_DIV = 1000
_VOID = 255
_THINGS = (11, 12, 13, 14, 15, 16, 17, 18)


def synthetic_example(num_instances, height=1024, width=2048, seed=0):
  """Returns (image [H, W, 3] uint8, panoptic [H, W] int32) numpy arrays."""
  rng = np.random.RandomState(seed)
  image = rng.randint(0, 256, [height, width, 3], dtype=np.uint8)
  panoptic = np.zeros([height, width], np.int32)  # road
  panoptic[:height // 3] = 10 * _DIV  # sky
  panoptic[-40:] = _VOID * _DIV  # ego car
  for i in range(num_instances):
    h, w = rng.randint(16, 300), rng.randint(16, 400)
    y, x = rng.randint(0, height - h), rng.randint(0, width - w)
    panoptic[y:y + h, x:x + w] = rng.choice(_THINGS) * _DIV + i + 1
  return image, panoptic


def _time_dataset(ds, warmup, num_images):
  it = iter(ds)
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(num_images):
    element = next(it)
  tf.nest.map_structure(lambda t: t.numpy(), element)
  return num_images / (time.perf_counter() - start)


def main(argv):
  del argv
  crop = [int(v) for v in _CROP.value]
  image, panoptic = synthetic_example(_NUM_INSTANCES.value)
  image, panoptic = tf.constant(image), tf.constant(panoptic)
  seeds = tf.data.Dataset.range(10**9).map(
      lambda i: tf.stack([i, tf.constant(0, tf.int64)]))

  def encode(p):
    return targets.encode_targets(p, _THINGS, _DIV, _VOID)

  def targets_only(seed):
    _, crop_panoptic = augment.random_crop_or_pad(
        image, panoptic, crop[0], crop[1], seed, _VOID * _DIV)
    return encode(crop_panoptic)

  def full(seed):
    out_image, out_panoptic = augment.preprocess_for_training(
        image, panoptic, seed, crop, _VOID * _DIV)
    features = encode(out_panoptic)
    features[common.IMAGE] = out_image
    return features

  print(f'TF {tf.__version__}, {len(tf.config.list_physical_devices("CPU"))} '
        f'CPU device(s), inter/intra threads default; crop {crop}, '
        f'{_NUM_INSTANCES.value} instances')
  for name, fn in (('targets', targets_only), ('pipeline', full)):
    ds = seeds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    rate = _time_dataset(ds, _WARMUP.value, _NUM_IMAGES.value)
    print(f'{name}: {rate:.1f} images/s')


if __name__ == '__main__':
  app.run(main)
