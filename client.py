"""Sends images to a TF Serving model (REST or gRPC) and writes the answers as PNGs.

  python client.py --server localhost:8501 --model_name panoptic \
      --input 'frames/*.png' --output answers
  python client.py --protocol grpc --server localhost:8500 --input frame.png \
      --output answers --signature serve_images

Images are decoded here (so the overlay shows what the model saw) and sent as
lossless PNG bytes to `serving_default`, or as uint8 pixels to `serve_images`.
The outputs are written as predict.py writes them (see docs/serving.md); a
file that cannot be read, or that the server refuses, is skipped and reported
as predict.py does (exit status 1).
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from official_naive_student import datasets  # pylint: disable=g-import-not-at-top
from official_naive_student.serving import client as client_lib  # pylint: disable=g-import-not-at-top
from official_naive_student.serving import export_module  # pylint: disable=g-import-not-at-top
from official_naive_student.serving import predict_lib  # pylint: disable=g-import-not-at-top

_SERVER = flags.DEFINE_string(
    'server', 'localhost:8501', 'host:port of the REST (8501) or gRPC (8500) '
    'API; a REST server may be given as a URL.')
_PROTOCOL = flags.DEFINE_enum('protocol', 'rest', ['rest', 'grpc'], 'API.')
_MODEL_NAME = flags.DEFINE_string('model_name', 'panoptic', 'Served model.')
_VERSION = flags.DEFINE_integer('version', None, 'Model version (latest).')
_SIGNATURE = flags.DEFINE_enum(
    'signature', export_module.SERVING_DEFAULT,
    [export_module.SERVING_DEFAULT, export_module.SERVE_IMAGES],
    'serving_default sends the file bytes, serve_images uint8 pixels.')
_COLUMNAR = flags.DEFINE_bool('columnar', False,
                              'REST: columnar "inputs" instead of "instances".')
_DATASET = flags.DEFINE_string('dataset', 'cityscapes',
                               'Label space of the model (for colours, ids).')
_INPUT = flags.DEFINE_string('input', None, 'Image file, folder or glob.',
                             required=True)
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder.', required=True)


def main(argv):
  del argv
  info = datasets.get_dataset_info(_DATASET.value)
  paths = predict_lib.list_images(_INPUT.value)
  client = client_lib.make_client(_PROTOCOL.value, _SERVER.value,
                                  _MODEL_NAME.value, _VERSION.value,
                                  columnar=_COLUMNAR.value)
  predictor = client_lib.make_predictor(client, _SIGNATURE.value)
  return predict_lib.predict_and_report(predictor, paths, _OUTPUT.value, info)


if __name__ == '__main__':
  app.run(main)
