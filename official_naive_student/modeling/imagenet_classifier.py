"""ImageNet classifier on top of a backbone: the model the paper's params/M-Adds describe.

Naive-Student reports backbone sizes as ImageNet classifiers (WR-41: 111M,
WR-38: 109M parameters), i.e. the backbone plus global average pooling and a
1000-way fully connected layer on the last endpoint. This model makes those
numbers checkable and is what an ImageNet pre-training run would train.
"""

from typing import Optional

import keras

from official_naive_student import common
from official_naive_student.modeling.layers import replica_random


@keras.saving.register_keras_serializable(package='naive_student')
class ImageNetClassifier(keras.Model):
  """Backbone -> global average pool of an endpoint -> Dense logits.

  Args:
    backbone: keras.Model returning a dict of endpoints (e.g. WideResNet).
    num_classes: int. Number of classes (1000 for ImageNet).
    endpoint: str. Endpoint to pool, common.RES5 by default.
    dropout_rate: float. Dropout before the classifier (0 disables it).

  Call: images float [B, H, W, 3] -> logits [B, num_classes].
  """

  def __init__(self,
               backbone: keras.Model,
               num_classes: int = 1000,
               endpoint: str = common.RES5,
               dropout_rate: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone
    self.num_classes = num_classes
    self.endpoint = endpoint
    self.dropout_rate = dropout_rate
    self.pool = keras.layers.GlobalAveragePooling2D(name='pool')
    self.dropout: Optional[keras.layers.Layer] = (
        replica_random.Dropout(dropout_rate, name='dropout')
        if dropout_rate > 0 else None)
    self.classifier = keras.layers.Dense(num_classes, name='logits')

  def call(self, images, training=None):
    features = self.backbone(images, training=training)[self.endpoint]
    x = self.pool(features)
    if self.dropout is not None:
      x = self.dropout(x, training=training)
    return self.classifier(x)

  def get_config(self):
    return {
        'name': self.name,
        'trainable': self.trainable,
        'backbone': keras.saving.serialize_keras_object(self.backbone),
        'num_classes': self.num_classes,
        'endpoint': self.endpoint,
        'dropout_rate': self.dropout_rate,
    }

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config['backbone'] = keras.saving.deserialize_keras_object(
        config['backbone'])
    return cls(**config)
