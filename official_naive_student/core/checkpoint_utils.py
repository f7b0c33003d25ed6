"""Initialization from another checkpoint, with a report of what was restored.

Used to start a Student from a previous Student or a Teacher, or a backbone from an
ImageNet checkpoint. Variables are matched by their object path inside the model
(`model/backbone/...`), so a checkpoint of a model with another head width restores
everything but the mismatching layers, and the report names both sides.
"""

import dataclasses
from typing import Dict, List, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tensorflow.core.protobuf import trackable_object_graph_pb2

from official_naive_student.core import inference

_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


@dataclasses.dataclass
class RestoreReport:
  restored: List[str]
  missing_in_checkpoint: List[str]
  shape_mismatch: List[str]
  unused_in_checkpoint: List[str]

  def summary(self) -> str:
    return (f'restored {len(self.restored)} variables, '
            f'{len(self.missing_in_checkpoint)} not in the checkpoint, '
            f'{len(self.shape_mismatch)} with another shape, '
            f'{len(self.unused_in_checkpoint)} checkpoint values unused')


def _variable_paths(root, prefix: str) -> Dict[str, tf.Variable]:
  """Object path -> variable, for every variable reachable from `root`."""
  paths = {}
  view = tf.train.TrackableView(root)
  # Breadth-first walk over named children, as the object graph is serialized.
  queue = [(root, prefix)]
  seen = {id(root)}
  while queue:
    obj, path = queue.pop(0)
    for name, value in view.children(obj).items():
      if id(value) in seen:
        continue
      seen.add(id(value))
      child_path = f'{path}/{name}'
      if isinstance(value, (tf.Variable, keras.Variable)):
        paths[child_path + _VALUE_SUFFIX] = value
      else:
        queue.append((value, child_path))
  return paths


def checkpoint_paths(reader, prefix: str) -> Dict[str, str]:
  """Object path under `prefix` -> key of its value in the checkpoint.

  A variable is saved once, under the key of its shortest path from the root:
  a trainer's checkpoint reaches the model's trainable variables through the
  optimizer first, so their keys are not `model/...`. The object graph stored in
  the checkpoint keeps every edge, so the walk from `prefix` finds them all.
  """
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor('_CHECKPOINTABLE_OBJECT_GRAPH'))
  start = [c.node_id for c in graph.nodes[0].children if c.local_name == prefix]
  if not start:
    return {}
  paths = {}
  queue = [(start[0], prefix)]
  seen = {start[0]}
  while queue:
    node_id, path = queue.pop(0)
    node = graph.nodes[node_id]
    for attribute in node.attributes:
      if attribute.name == 'VARIABLE_VALUE':
        paths[path + _VALUE_SUFFIX] = attribute.checkpoint_key
    for child in node.children:
      if child.node_id not in seen:
        seen.add(child.node_id)
        queue.append((child.node_id, f'{path}/{child.local_name}'))
  return paths


def restore_matching(checkpoint_path: str, root: tf.Module,
                     prefix: str = 'model',
                     skip_prefixes: Sequence[str] = ()) -> RestoreReport:
  """Restores every variable of `root` whose key and shape match the checkpoint.

  Args:
    checkpoint_path: a checkpoint prefix, folder or model_dir
      (`inference.resolve_checkpoint`).
    root: the object saved under `prefix` in the checkpoint (the model).
    prefix: the name `root` had in the saved tf.train.Checkpoint.
    skip_prefixes: key prefixes (relative to `prefix`) never restored, e.g. the
      semantic head when the class count differs.

  Returns:
    A RestoreReport naming what was restored and what was not.
  """
  checkpoint_path = inference.resolve_checkpoint(checkpoint_path)
  reader = tf.train.load_checkpoint(checkpoint_path)
  shapes = reader.get_variable_to_shape_map()
  saved = checkpoint_paths(reader, prefix)
  wanted = _variable_paths(root, prefix)
  restored, missing, mismatch = [], [], []
  for path, variable in sorted(wanted.items()):
    relative = path[len(prefix) + 1:]
    key = saved.get(path)
    if any(relative.startswith(p) for p in skip_prefixes) or key not in shapes:
      missing.append(path)
      continue
    if list(shapes[key]) != list(variable.shape):
      mismatch.append(path)
      continue
    variable.assign(np.asarray(reader.get_tensor(key)).astype(
        tf.as_dtype(variable.dtype).as_numpy_dtype))
    restored.append(path)
  unused = sorted(set(saved) - set(wanted))
  report = RestoreReport(restored, missing, mismatch, unused)
  logging.info('Initialized from %s: %s', checkpoint_path, report.summary())
  for key in missing + mismatch:
    logging.info('  not restored: %s', key)
  return report
