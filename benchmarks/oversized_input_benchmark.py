"""Peak memory and time of one oversized PNG sent to an exported model (issue #12).

  PYTHONPATH=. .venv/bin/python benchmarks/oversized_input_benchmark.py \
      --saved_model exported/panoptic/7 --height 4000 --width 8000

Encodes a constant height x width PNG (a file of ~100 KB), loads the SavedModel
in this fresh process with nothing but TensorFlow, sends the PNG once to
`serving_default` and prints one JSON line: the file size, the peak resident
memory (VmHWM of /proc/self/status) after loading and after the request, the
request's wall time and the model's answer (an output shape, or its error).
"""

import argparse
import io
import json
import time

from PIL import Image
import tensorflow as tf


def peak_rss_mib() -> float:
  """This process's peak resident set size so far (Linux VmHWM)."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) / 1024
  raise RuntimeError('no VmHWM in /proc/self/status')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--saved_model', required=True)
  parser.add_argument('--height', type=int, default=4000)
  parser.add_argument('--width', type=int, default=8000)
  args = parser.parse_args()
  buffer = io.BytesIO()
  Image.new('RGB', (args.width, args.height), (90, 120, 30)).save(
      buffer, format='PNG')
  signature = tf.saved_model.load(args.saved_model).signatures[
      'serving_default']
  loaded_mib = peak_rss_mib()
  start = time.perf_counter()
  try:
    outputs = signature(encoded_images=tf.constant([buffer.getvalue()]))
    answer = f'panoptic {outputs["panoptic"].shape.as_list()}'
  except tf.errors.InvalidArgumentError as e:
    answer = 'refused: ' + ' '.join(e.message.split())[:300]
  print(json.dumps({
      'image': f'{args.height}x{args.width}', 'png_kib': len(buffer.getvalue())
      // 1024, 'peak_rss_mib_loaded': round(loaded_mib),
      'peak_rss_mib_after': round(peak_rss_mib()),
      'seconds': round(time.perf_counter() - start, 2), 'answer': answer}))


if __name__ == '__main__':
  main()
