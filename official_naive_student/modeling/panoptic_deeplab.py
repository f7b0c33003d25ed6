"""PanopticDeepLab: a thin model that wires an injected backbone, decoders and heads.

The model only normalizes images, runs its parts and brings the three raw
predictions to input resolution; it never post-processes, so training, eval,
pseudo-labelling and export all share exactly this computation.
Parts are built by `presets.build_panoptic_deeplab` (which gin binds).

Output conventions (DeepLab2 `model/deeplab.py`): predictions are upsampled with
aligned-corner bilinear resizing; offsets are predicted in stride-4 pixels and
multiplied by (H - 1) / (h - 1) per axis, so they are in input pixels, (y, x),
pointing from a pixel to its instance center.
"""

from typing import Dict

import keras
import tensorflow as tf

from official_naive_student import common
from official_naive_student.modeling.layers import resize

_PARTS = ('backbone', 'semantic_decoder', 'instance_decoder', 'semantic_head',
          'center_head', 'offset_head')


def normalize_images(images: tf.Tensor) -> tf.Tensor:
  """Maps float images in [0, 255] to [-1, 1], as DeepLab2 and Inception do."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0


@keras.saving.register_keras_serializable(package='naive_student')
class PanopticDeepLab(keras.Model):
  """Backbone -> {semantic, instance} decoder -> {semantic, center, offset} heads.

  Args:
    backbone: keras.Model, images [B, H, W, 3] in [-1, 1] -> dict with
      common.RES2..RES5 endpoints (`WideResNet`, `Xception`).
    semantic_decoder: layer, endpoint dict -> stride-4 semantic features
      (`PanopticDeepLabDecoder`).
    instance_decoder: layer, endpoint dict -> stride-4 instance features.
    semantic_head: layer, semantic features -> [B, h, w, num_classes] logits
      (`PredictionHead`).
    center_head: layer, instance features -> [B, h, w, 1] heatmap.
    offset_head: layer, instance features -> [B, h, w, 2] offsets in h x w
      pixels.

  Call: images float [B, H, W, 3] in [0, 255] ->
    {common.PRED_SEMANTIC_LOGITS: [B, H, W, C],
     common.PRED_CENTER_HEATMAP: [B, H, W, 1],
     common.PRED_OFFSET: [B, H, W, 2] (y, x) in input pixels}, all float32.

  Example:
    model = presets.build_panoptic_deeplab('tiny', num_classes=19)
    outputs = model(images, training=False)
  """

  def __init__(self,
               backbone: keras.Model,
               semantic_decoder: keras.layers.Layer,
               instance_decoder: keras.layers.Layer,
               semantic_head: keras.layers.Layer,
               center_head: keras.layers.Layer,
               offset_head: keras.layers.Layer,
               **kwargs):
    super().__init__(**kwargs)
    # === Layers ===
    self.backbone = backbone
    self.semantic_decoder = semantic_decoder
    self.instance_decoder = instance_decoder
    self.semantic_head = semantic_head
    self.center_head = center_head
    self.offset_head = offset_head

  @property
  def output_stride(self) -> int:
    return self.backbone.output_stride

  def call(self, images: tf.Tensor, training=None) -> Dict[str, tf.Tensor]:
    size = resize.spatial_size(images)
    features = self.backbone(normalize_images(images), training=training)
    semantic = self.semantic_decoder(features, training=training)
    instance = self.instance_decoder(features, training=training)
    logits = self.semantic_head(semantic, training=training)
    center = self.center_head(instance, training=training)
    offset = self.offset_head(instance, training=training)
    return {
        common.PRED_SEMANTIC_LOGITS: tf.cast(
            resize.resize_align_corners(logits, size), tf.float32),
        common.PRED_CENTER_HEATMAP: tf.cast(
            resize.resize_align_corners(center, size), tf.float32),
        common.PRED_OFFSET: tf.cast(
            resize.resize_and_rescale_offsets(offset, size), tf.float32),
    }

  def get_config(self):
    config = {'name': self.name, 'trainable': self.trainable}
    for part in _PARTS:
      config[part] = keras.saving.serialize_keras_object(getattr(self, part))
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    for part in _PARTS:
      config[part] = keras.saving.deserialize_keras_object(config[part])
    return cls(**config)
