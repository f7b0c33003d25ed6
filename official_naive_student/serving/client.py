"""Clients of a served panoptic model: TF Serving's REST and gRPC Predict APIs.

Both send a batch of images to one of the export's signatures
(`serving_default`: PNG/JPEG bytes, `serve_images`: uint8 pixels; see
`export_module`) and return the outputs as numpy arrays keyed like
`common.PRED_*`, so `prediction_pngs.write_prediction` can store them. They
speak the documented protocols only, and work against `tensorflow_model_server`,
the `tensorflow/serving` container, or `standin_servers` in tests.

  client = RestClient('http://localhost:8501', 'panoptic')
  outputs = client.predict_encoded([open('frame.png', 'rb').read()])
  outputs['panoptic'][0]   # int32 [H, W]
"""

import base64
import io
import json
import urllib.error
import urllib.request
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from PIL import Image

from official_naive_student.serving import export_module

_OUTPUT_DTYPES = {'instance_scores': np.float32, 'semantic_probs': np.float32}


class ServingError(RuntimeError):
  """The server refused a request; the message is the server's."""


class InvalidInputError(ServingError):
  """The server refused the request's inputs (HTTP 400, INVALID_ARGUMENT).

  Unlike other ServingErrors (no such model, server down), the next image
  may well succeed.
  """


def _check_images(images) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'{export_module.IMAGES} must be uint8 [batch, height, '
                     f'width, 3]; got {images.dtype} {images.shape}')
  return images


def _as_arrays(columns: Dict[str, list]) -> Dict[str, np.ndarray]:
  return {name: np.asarray(value, _OUTPUT_DTYPES.get(name, np.int32))
          for name, value in columns.items()}


class RestClient:
  """`POST <url>/v1/models/<model>[/versions/<v>]:predict` with JSON.

  Args:
    url: 'http://host:8501' (TF Serving's --rest_api_port).
    model_name: the served model's name (--model_name, MODEL_NAME).
    version: a specific version, or None for the latest.
    columnar: send the columnar `inputs` format instead of row `instances`.
    timeout: seconds per request.
  """

  def __init__(self, url: str, model_name: str = 'panoptic',
               version: Optional[int] = None, columnar: bool = False,
               timeout: float = 600.0):
    url = url if '://' in url else f'http://{url}'
    path = f'/v1/models/{model_name}'
    if version is not None:
      path += f'/versions/{int(version)}'
    self.predict_url = url.rstrip('/') + path + ':predict'
    self.columnar = columnar
    self.timeout = timeout

  def predict(self, signature_name: str, name: str,
              values: list) -> Dict[str, np.ndarray]:
    """Sends one input (a batch as JSON values); returns the outputs."""
    if self.columnar:
      body = {'signature_name': signature_name, 'inputs': {name: values}}
    else:
      body = {'signature_name': signature_name,
              'instances': [{name: v} for v in values]}
    request = urllib.request.Request(
        self.predict_url, data=json.dumps(body).encode(),
        headers={'Content-Type': 'application/json'}, method='POST')
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
      detail = e.read().decode(errors='replace')
      try:
        detail = json.loads(detail).get('error', detail)
      except json.JSONDecodeError:
        pass
      error = InvalidInputError if e.code == 400 else ServingError
      raise error(f'{self.predict_url}: HTTP {e.code}: {detail}') from e
    if 'outputs' in answer:
      return _as_arrays(answer['outputs'])
    predictions = answer['predictions']
    return _as_arrays({key: [p[key] for p in predictions]
                       for key in predictions[0]})

  def predict_encoded(self, encoded_images: Sequence[bytes],
                      signature_name: str = export_module.SERVING_DEFAULT
                      ) -> Dict[str, np.ndarray]:
    """PNG/JPEG bytes (one size per batch) -> outputs with batch dimension."""
    values = [{'b64': base64.b64encode(data).decode()}
              for data in encoded_images]
    return self.predict(signature_name, export_module.ENCODED_IMAGES, values)

  def predict_images(self, images,
                     signature_name: str = export_module.SERVE_IMAGES
                     ) -> Dict[str, np.ndarray]:
    """uint8 [B, H, W, 3] -> outputs (JSON numbers: slow for large images)."""
    return self.predict(signature_name, export_module.IMAGES,
                        _check_images(images).tolist())


class GrpcClient:
  """`tensorflow.serving.PredictionService/Predict` over an insecure channel.

  Args:
    target: 'host:8500' (TF Serving's --port).
    model_name, version: as RestClient.
    timeout: seconds per request.
    max_message_bytes: gRPC message limit (outputs are H * W * 12 bytes and
      more per image).
  """

  def __init__(self, target: str, model_name: str = 'panoptic',
               version: Optional[int] = None, timeout: float = 600.0,
               max_message_bytes: int = 256 << 20):
    # Imported here so REST users need neither grpcio nor the serving API.
    import grpc  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self._grpc, self._tf, self._predict_pb2 = grpc, tf, predict_pb2
    options = [('grpc.max_send_message_length', max_message_bytes),
               ('grpc.max_receive_message_length', max_message_bytes)]
    self._channel = grpc.insecure_channel(target, options=options)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)
    self.target = target
    self.model_name = model_name
    self.version = version
    self.timeout = timeout

  def predict(self, signature_name: str, name: str,
              value: np.ndarray) -> Dict[str, np.ndarray]:
    """Sends one input tensor; returns the outputs."""
    request = self._predict_pb2.PredictRequest()
    request.model_spec.name = self.model_name
    request.model_spec.signature_name = signature_name
    if self.version is not None:
      request.model_spec.version.value = int(self.version)
    request.inputs[name].CopyFrom(self._tf.make_tensor_proto(value))
    try:
      response = self._stub.Predict(request, timeout=self.timeout)
    except self._grpc.RpcError as e:
      error = (InvalidInputError
               if e.code() == self._grpc.StatusCode.INVALID_ARGUMENT
               else ServingError)
      raise error(f'{self.target}: {e.code().name}: {e.details()}') from e
    return {key: self._tf.make_ndarray(proto)
            for key, proto in response.outputs.items()}

  def predict_encoded(self, encoded_images: Sequence[bytes],
                      signature_name: str = export_module.SERVING_DEFAULT
                      ) -> Dict[str, np.ndarray]:
    return self.predict(signature_name, export_module.ENCODED_IMAGES,
                        np.asarray(list(encoded_images), dtype=object))

  def predict_images(self, images,
                     signature_name: str = export_module.SERVE_IMAGES
                     ) -> Dict[str, np.ndarray]:
    return self.predict(signature_name, export_module.IMAGES,
                        _check_images(images))

  def close(self):
    self._channel.close()


def make_client(protocol: str, server: str, model_name: str = 'panoptic',
                version: Optional[int] = None, columnar: bool = False):
  """'rest' -> RestClient(server), 'grpc' -> GrpcClient(server)."""
  if protocol == 'rest':
    return RestClient(server, model_name, version, columnar=columnar)
  if protocol == 'grpc':
    return GrpcClient(server, model_name, version)
  raise ValueError(f'protocol must be rest or grpc, got {protocol!r}')


def encode_png(image: np.ndarray) -> bytes:
  """[H, W, 3] uint8 -> PNG bytes (lossless, so the server sees `image`)."""
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format='PNG')
  return buffer.getvalue()


def make_predictor(client, signature_name: str = export_module.SERVING_DEFAULT
                   ) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
  """`fn(image [H, W, 3] uint8) -> outputs of that image` through `client`.

  `serving_default` gets the image as PNG bytes, `serve_images` as pixels.
  """
  def predict(image: np.ndarray) -> Dict[str, np.ndarray]:
    if signature_name == export_module.SERVE_IMAGES:
      outputs = client.predict_images(image[None], signature_name)
    else:
      outputs = client.predict_encoded([encode_png(image)], signature_name)
    return {name: value[0] for name, value in outputs.items()}
  return predict
