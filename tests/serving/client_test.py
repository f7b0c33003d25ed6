"""Clients against stand-ins speaking TF Serving's REST and gRPC Predict APIs."""

import base64
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from official_naive_student.serving import client as client_lib
from official_naive_student.serving import export_module
from official_naive_student.serving import standin_servers


@pytest.fixture(scope='module')
def servers(exported):
  runner = standin_servers.SignatureRunner(exported['saved_model'])
  with standin_servers.RestStandIn(None, 'panoptic', runner=runner) as rest, \
      standin_servers.GrpcStandIn(None, 'panoptic', runner=runner) as grpc_:
    yield {'rest': rest, 'grpc': grpc_, 'runner': runner}


@pytest.fixture(scope='module')
def direct(servers, make_images):
  """Images, their PNG bytes and the SavedModel's own outputs for them."""
  images = make_images(2, 17, 25, seed=3)
  encoded = [tf.io.encode_png(i).numpy() for i in images]
  outputs = servers['runner'].run(export_module.SERVE_IMAGES,
                                  {export_module.IMAGES: images})
  return images, encoded, outputs


def _assert_same(got, want):
  assert sorted(got) == sorted(want)
  for key in want:
    assert got[key].dtype == want[key].dtype, key
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize('columnar', [False, True])
def test_rest_bytes_row_and_columnar(servers, direct, columnar):
  _, encoded, want = direct
  client = client_lib.RestClient(servers['rest'].url, 'panoptic',
                                 columnar=columnar)
  _assert_same(client.predict_encoded(encoded), want)


def test_rest_pixels_and_versioned_path(servers, direct):
  images, _, want = direct
  client = client_lib.RestClient(servers['rest'].url.replace('http://', ''),
                                 'panoptic', version=1)
  assert client.predict_url.endswith('/v1/models/panoptic/versions/1:predict')
  _assert_same(client.predict_images(images), want)


def test_grpc_both_signatures(servers, direct):
  images, encoded, want = direct
  client = client_lib.GrpcClient(servers['grpc'].target, 'panoptic')
  try:
    _assert_same(client.predict_encoded(encoded), want)
    _assert_same(client.predict_images(images), want)
  finally:
    client.close()


def test_raw_rest_request_as_curl_sends_it(servers, direct):
  """The JSON of docs/serving.md's curl example, without any client code."""
  _, encoded, want = direct
  body = {'instances': [{'b64': base64.b64encode(encoded[0]).decode()}]}
  request = urllib.request.Request(
      servers['rest'].url + '/v1/models/panoptic:predict',
      data=json.dumps(body).encode(), method='POST')
  with urllib.request.urlopen(request) as response:
    prediction = json.loads(response.read())['predictions'][0]
  np.testing.assert_array_equal(prediction['panoptic'], want['panoptic'][0])
  with urllib.request.urlopen(servers['rest'].url +
                              '/v1/models/panoptic') as response:
    status = json.loads(response.read())['model_version_status'][0]
  assert status['state'] == 'AVAILABLE'


def test_server_errors_reach_the_client_with_the_field_name(servers):
  rest = client_lib.RestClient(servers['rest'].url, 'panoptic')
  with pytest.raises(client_lib.InvalidInputError,
                     match=r'HTTP 400: encoded_images\[0\] is not a PNG'):
    rest.predict_encoded([b'hello'])
  with pytest.raises(client_lib.ServingError, match='HTTP 404') as raised:
    client_lib.RestClient(servers['rest'].url, 'other').predict_encoded([b'x'])
  assert not isinstance(raised.value, client_lib.InvalidInputError)
  with pytest.raises(client_lib.ServingError,
                     match="input 'images' must be uint8, got float64"):
    rest.predict('serve_images', 'images', [[[[0.5, 0.5, 0.5]]]])
  grpc_client = client_lib.GrpcClient(servers['grpc'].target, 'panoptic')
  try:
    with pytest.raises(client_lib.InvalidInputError,
                       match="INVALID_ARGUMENT: input 'images' must be uint8"):
      grpc_client.predict('serve_images', 'images',
                          np.zeros([1, 4, 4, 3], np.float32))
    with pytest.raises(client_lib.ServingError,
                       match=r'INVALID_ARGUMENT: images must be uint8 \[batch'):
      grpc_client.predict('serve_images', 'images',
                          np.zeros([4, 4, 3], np.uint8))
  finally:
    grpc_client.close()
  with pytest.raises(ValueError, match='images must be uint8'):
    rest.predict_images(np.zeros([4, 4, 3], np.uint8))


def test_make_predictor_returns_one_image(servers, direct):
  images, _, want = direct
  client = client_lib.RestClient(servers['rest'].url, 'panoptic')
  for signature in (export_module.SERVING_DEFAULT, export_module.SERVE_IMAGES):
    got = client_lib.make_predictor(client, signature)(images[1])
    np.testing.assert_array_equal(got['panoptic'], want['panoptic'][1])


def test_client_cli_skips_bad_images_and_exits_non_zero(servers,
                                                        run_on_bad_inputs):
  run_on_bad_inputs('client.py', f'--server={servers["rest"].url}')


def _post(url, body: bytes):
  """(HTTP status, decoded JSON answer) of a raw REST predict request."""
  request = urllib.request.Request(url + '/v1/models/panoptic:predict',
                                   data=body, method='POST')
  try:
    with urllib.request.urlopen(request) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _b64(data: bytes) -> dict:
  return {'b64': base64.b64encode(data).decode()}


def test_malformed_rest_requests_get_400_naming_the_field(servers, direct):
  """Each of these used to close the connection without an answer."""
  _, encoded, _ = direct
  cut = encoded[1][:len(encoded[1]) // 2]
  cases = [
      ([_b64(encoded[0])], 'the request body must be a JSON object'),
      ({'instances': [{'encoded_images': {'b64': 'not base64!'}}]},
       r'instances\[0\]\.encoded_images: "b64" must be a base64 string'),
      ({'inputs': {'encoded_images': [_b64(encoded[0]), {'b64': 7}]}},
       r'inputs\.encoded_images\[1\]: "b64" must be a base64 string'),
      ({'signature_name': 'serve_images',
        'instances': [[[['a', 'b', 'c']]]]},
       "input 'images' must be uint8 numbers, got strings"),
      ({'signature_name': 'serve_images',
        'instances': [{'images': _b64(encoded[0])}]},
       "input 'images' must be uint8 numbers, got bytes"),
      ({'instances': [_b64(encoded[0]), _b64(cut)]},
       r'encoded_images\[1\] is a truncated PNG'),
  ]
  for body, message in cases:
    status, answer = _post(servers['rest'].url, json.dumps(body).encode())
    assert status == 400 and re.search(message, answer['error']), (body,
                                                                   answer)
