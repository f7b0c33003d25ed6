"""Local stand-ins for TF Serving's REST and gRPC Predict APIs over a SavedModel.

For tests of clients (ours, and users' own) where no `tensorflow_model_server`
binary or container exists: each server loads a SavedModel with
`tf.saved_model.load`, listens on 127.0.0.1 (a free port by default) and speaks
the documented request/response formats of TF Serving's Predict API:
  * REST: `POST /v1/models/<name>[/versions/<v>]:predict` with the row
    (`instances`) or columnar (`inputs`) JSON format, `{"b64": ...}` for bytes;
    answers `predictions` or `outputs`, or `{"error": ...}` with status 400;
    `GET /v1/models/<name>` answers the model status.
  * gRPC: `tensorflow.serving.PredictionService/Predict` with `PredictRequest`
    / `PredictResponse` (tensorflow-serving-api).
They are test fixtures, not servers: one model, no batching, no versions
policy, no TLS.

  with RestStandIn(saved_model_dir, 'panoptic') as server:
    requests.post(server.url + '/v1/models/panoptic:predict', json=...)
"""

import base64
import binascii
import http.server
import json
import re
import threading
from concurrent import futures
from typing import Any, Dict, Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from official_naive_student.serving import export_module

DEFAULT_SIGNATURE = 'serving_default'
_PREDICT_PATH = re.compile(
    r'^/v1/models/(?P<name>[^/:]+)(/versions/(?P<version>\d+))?:predict$')
_STATUS_PATH = re.compile(r'^/v1/models/(?P<name>[^/:]+)/?$')


class PredictError(ValueError):
  """A request the model cannot run; its message goes back to the client."""


class SignatureRunner:
  """Runs named signatures of a loaded SavedModel on numpy inputs."""

  def __init__(self, saved_model_dir: str):
    self.saved_model_dir = saved_model_dir
    self._loaded = tf.saved_model.load(saved_model_dir)
    self.signatures = dict(self._loaded.signatures)

  def input_specs(self, signature_name: str) -> Dict[str, tf.TensorSpec]:
    if signature_name not in self.signatures:
      raise PredictError(f'Serving signature name: "{signature_name}" not '
                         f'found in signature def; known: '
                         f'{sorted(self.signatures)}')
    return self.signatures[signature_name].structured_input_signature[1]

  def run(self, signature_name: str,
          inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """Converts `inputs` to the declared dtypes and runs the signature.

    Raises:
      PredictError: unknown signature or input name, a value that does not
        convert to the declared dtype, or an error raised by the model (its
        asserts name the offending field).
    """
    specs = self.input_specs(signature_name)
    unknown = set(inputs) - set(specs)
    missing = set(specs) - set(inputs)
    if unknown or missing:
      raise PredictError(f'signature {signature_name!r} takes inputs '
                         f'{sorted(specs)}; got {sorted(inputs)}')
    tensors = {name: _to_tensor(name, value, specs[name])
               for name, value in inputs.items()}
    try:
      outputs = self.signatures[signature_name](**tensors)
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
      raise PredictError(export_module.error_message(e)) from e
    return {name: value.numpy() for name, value in outputs.items()}


def _to_tensor(name: str, value: Any, spec: tf.TensorSpec) -> tf.Tensor:
  """`value` as a tensor of `spec.dtype`, or a PredictError naming `name`."""
  if isinstance(value, tf.Tensor):
    value = value.numpy()
  if spec.dtype == tf.string:
    array = np.asarray(value, dtype=object)
    if array.size and not all(isinstance(v, bytes) for v in array.flat):
      raise PredictError(f'input {name!r} must be bytes (in JSON: '
                         f'{{"b64": ...}} objects)')
    return tf.constant(array, tf.string)
  try:
    array = np.asarray(value)
  except ValueError as e:  # Ragged nested lists.
    raise PredictError(f'input {name!r}: {e}') from e
  want = spec.dtype.as_numpy_dtype
  if array.dtype.kind in 'OSUV':  # Strings, bytes, mixed: no numbers.
    got = {'S': 'bytes', 'U': 'strings'}.get(array.dtype.kind,
                                             'non-numeric values')
    raise PredictError(f'input {name!r} must be {spec.dtype.name} numbers, '
                       f'got {got}')
  if array.dtype.kind == 'f' and np.dtype(want).kind in 'iu':
    raise PredictError(f'input {name!r} must be {spec.dtype.name}, got '
                       f'{array.dtype.name} values')
  if array.size and np.dtype(want).kind in 'iu':
    info = np.iinfo(want)
    if array.min() < info.min or array.max() > info.max:
      raise PredictError(f'input {name!r} must be {spec.dtype.name}: values '
                         f'must be in [{info.min}, {info.max}]')
  return tf.constant(array.astype(want))


# --- REST -------------------------------------------------------------------


def _decode_b64(value: Any, where: str) -> Any:
  """Replaces every {"b64": s} in nested JSON with the decoded bytes.

  Raises:
    PredictError: naming the field (`where`, e.g. 'instances[0].images') of a
      value that is not base64.
  """
  if isinstance(value, dict):
    if set(value) == {'b64'}:
      try:
        return base64.b64decode(value['b64'], validate=True)
      except (binascii.Error, TypeError, ValueError) as e:
        raise PredictError(f'{where}: "b64" must be a base64 string ({e})'
                           ) from e
    return {k: _decode_b64(v, f'{where}.{k}') for k, v in value.items()}
  if isinstance(value, list):
    return [_decode_b64(v, f'{where}[{i}]') for i, v in enumerate(value)]
  return value


def _json_value(array: np.ndarray) -> Any:
  if array.dtype == object or array.dtype.kind == 'S':
    return [{'b64': base64.b64encode(v).decode()} for v in array.flat]
  return array.tolist()


def handle_predict(runner: SignatureRunner, body: Dict[str, Any]
                   ) -> Dict[str, Any]:
  """A TF Serving REST predict request body -> response body."""
  if not isinstance(body, dict):
    raise PredictError(f'the request body must be a JSON object with '
                       f'"instances" or "inputs", got a JSON '
                       f'{type(body).__name__}')
  signature_name = body.get('signature_name', DEFAULT_SIGNATURE)
  specs = runner.input_specs(signature_name)
  if ('instances' in body) == ('inputs' in body):
    raise PredictError('the request must have exactly one of "instances" '
                       '(row format) or "inputs" (columnar format)')
  if 'instances' in body:
    instances = _decode_b64(body['instances'], 'instances')
    if not isinstance(instances, list) or not instances:
      raise PredictError('"instances" must be a non-empty list')
    if all(isinstance(i, dict) for i in instances):
      inputs = {name: [i.get(name) for i in instances] for name in instances[0]}
    elif len(specs) == 1:
      inputs = {next(iter(specs)): instances}
    else:
      raise PredictError(f'signature {signature_name!r} has inputs '
                         f'{sorted(specs)}: name them in each instance')
  else:
    columns = _decode_b64(body['inputs'], 'inputs')
    if isinstance(columns, dict):
      inputs = columns
    elif len(specs) == 1:
      inputs = {next(iter(specs)): columns}
    else:
      raise PredictError(f'signature {signature_name!r} has inputs '
                         f'{sorted(specs)}: name them in "inputs"')
  outputs = runner.run(signature_name, inputs)
  if 'instances' in body:
    batch = len(next(iter(outputs.values())))
    return {'predictions': [
        {name: _json_value(value[i]) if value[i].ndim else value[i].item()
         for name, value in outputs.items()} for i in range(batch)]}
  return {'outputs': {name: _json_value(value)
                      for name, value in outputs.items()}}


class _RestHandler(http.server.BaseHTTPRequestHandler):
  """Routes TF Serving's REST paths to the server's runner."""

  server_version = 'TFServingStandIn/1'

  def log_message(self, *args):  # Quiet: tests read stderr.
    del args

  def _reply(self, status: int, body: Dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def do_GET(self):  # pylint: disable=invalid-name
    match = _STATUS_PATH.match(self.path)
    if not match or match.group('name') != self.server.model_name:
      self._reply(404, {'error': f'Servable not found for request: {self.path}'})
      return
    self._reply(200, {'model_version_status': [{
        'version': str(self.server.version), 'state': 'AVAILABLE',
        'status': {'error_code': 'OK', 'error_message': ''}}]})

  def do_POST(self):  # pylint: disable=invalid-name
    match = _PREDICT_PATH.match(self.path)
    if not match or match.group('name') != self.server.model_name:
      self._reply(404, {'error': f'Servable not found for request: {self.path}'})
      return
    try:
      length = int(self.headers.get('Content-Length', 0))
      body = json.loads(self.rfile.read(length) or b'{}')
      answer = handle_predict(self.server.runner, body)
    except (PredictError, json.JSONDecodeError) as e:
      self._reply(400, {'error': str(e)})
      return
    except Exception as e:  # pylint: disable=broad-except
      # Never close the connection without an answer.
      self._reply(500, {'error': f'{type(e).__name__}: {e}'})
      return
    self._reply(200, answer)


class _StandIn:
  """Starts in `__enter__` (or `start`), stops in `__exit__` (or `stop`)."""

  def __enter__(self):
    self.start()
    return self

  def __exit__(self, *exc):
    self.stop()


class RestStandIn(_StandIn):
  """TF Serving's REST predict API on 127.0.0.1 for one SavedModel.

  Args:
    saved_model_dir: the SavedModel (a `<base>/<version>` folder).
    model_name: the `<name>` in `/v1/models/<name>:predict`.
    port: 0 picks a free port; see `port` / `url` after `start()`.
    version: reported by the status API.
    runner: an existing SignatureRunner to share with a gRPC stand-in.
  """

  def __init__(self, saved_model_dir: str, model_name: str = 'panoptic',
               port: int = 0, version: int = 1, runner=None):
    self.runner = runner or SignatureRunner(saved_model_dir)
    self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', port),
                                                  _RestHandler)
    self._httpd.daemon_threads = True
    self._httpd.runner = self.runner
    self._httpd.model_name = model_name
    self._httpd.version = version
    self._thread = None

  @property
  def port(self) -> int:
    return self._httpd.server_address[1]

  @property
  def url(self) -> str:
    return f'http://127.0.0.1:{self.port}'

  def start(self):
    self._thread = threading.Thread(target=self._httpd.serve_forever,
                                    daemon=True)
    self._thread.start()

  def stop(self):
    self._httpd.shutdown()
    self._httpd.server_close()
    if self._thread is not None:
      self._thread.join()


# --- gRPC -------------------------------------------------------------------


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """PredictionService.Predict over a SignatureRunner (other RPCs: UNIMPLEMENTED)."""

  def __init__(self, runner: SignatureRunner, model_name: str, version: int):
    self._runner = runner
    self._model_name = model_name
    self._version = version

  def Predict(self, request, context):  # pylint: disable=invalid-name
    if request.model_spec.name != self._model_name:
      context.abort(grpc.StatusCode.NOT_FOUND,
                    f'Servable not found for request: Latest('
                    f'{request.model_spec.name})')
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    try:
      inputs = {name: tf.make_ndarray(proto)
                for name, proto in request.inputs.items()}
      outputs = self._runner.run(signature_name, inputs)
    except PredictError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = self._model_name
    response.model_spec.signature_name = signature_name
    response.model_spec.version.value = self._version
    wanted = set(request.output_filter) or set(outputs)
    for name in wanted & set(outputs):
      response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
    return response


class GrpcStandIn(_StandIn):
  """TF Serving's gRPC PredictionService.Predict on 127.0.0.1.

  Args: as `RestStandIn`; `target` is 'host:port' for `grpc.insecure_channel`.
  """

  def __init__(self, saved_model_dir: str, model_name: str = 'panoptic',
               port: int = 0, version: int = 1, runner=None,
               max_message_bytes: int = 256 << 20):
    self.runner = runner or SignatureRunner(saved_model_dir)
    options = [('grpc.max_send_message_length', max_message_bytes),
               ('grpc.max_receive_message_length', max_message_bytes)]
    self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                               options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(self.runner, model_name, version), self._server)
    self.port = self._server.add_insecure_port(f'127.0.0.1:{port}')

  @property
  def target(self) -> str:
    return f'127.0.0.1:{self.port}'

  def start(self):
    self._server.start()

  def stop(self):
    self._server.stop(grace=None)
