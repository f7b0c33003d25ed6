"""Panoptic-DeepLab post-processing in plain TF ops: one graph for eval, labels, export.

Raw outputs (semantic logits, center heatmap, center offsets) become a panoptic map
following Panoptic-DeepLab (Cheng et al., CVPR 2020) and DeepLab2's
`model/post_processor/panoptic_deeplab.py` plus its `merge_semantic_and_instance_maps`
kernel. Everything is vectorized TF (no py_function, no custom op, no Python loop
over instances) with static shapes where it matters (`keep_k` padding), so the same
graph runs on CPU/GPU/TPU, inside an exported SavedModel and under
`jit_compile=True` (thing-pixel compaction becomes a bounded dynamic shape). On CPU,
plain graph mode is the fast path (~10x DeepLab2's pure-TF version; see
benchmarks/post_processing_benchmark.py); XLA:CPU is several times slower.

Conventions (see `common.py`): offsets are (y, x) in pixels pointing from a pixel to
its instance center; panoptic = train_id * label_divisor + instance_id; void =
void_label * label_divisor. Center points are (y, x) int32, padded with -1.

Differences from DeepLab2, all deliberate:
  * top-k keeps exactly `keep_k` centers (ties broken by raster order); DeepLab2
    keeps those strictly above the k-th score, which may drop tied centers.
  * instance scores are semantic score * center score (the Panoptic-DeepLab paper),
    per instance, instead of DeepLab2's per-pixel center-score map.
"""

from typing import Dict, Optional, Sequence, Tuple

import gin
import keras
import tensorflow as tf

from official_naive_student import common

# Stuff segments of at most this many pixels become void, at this reference size.
DEFAULT_STUFF_AREA_LIMIT = 4096
STUFF_AREA_REFERENCE_SIZE = (1024, 2048)


def scaled_stuff_area_limit(height, width, base_limit=DEFAULT_STUFF_AREA_LIMIT,
                            reference_size=STUFF_AREA_REFERENCE_SIZE):
  """Scales a stuff-area limit given at `reference_size` to a height x width image.

  Args:
    height: int or scalar int tensor.
    width: int or scalar int tensor.
    base_limit: limit in pixels at `reference_size` (4096 at 1024x2048).
    reference_size: (height, width) the base limit refers to.

  Returns:
    round(base_limit * height * width / (ref_h * ref_w)), a Python int when the
    inputs are ints, else a scalar int32 tensor.
  """
  scale = 1.0 / float(reference_size[0] * reference_size[1])
  if isinstance(height, int) and isinstance(width, int):
    return int(round(base_limit * height * width * scale))
  area = tf.cast(height, tf.float32) * tf.cast(width, tf.float32)
  return tf.cast(tf.round(base_limit * area * scale), tf.int32)


def find_instance_centers(center_heatmap: tf.Tensor,
                          threshold: float = 0.1,
                          nms_kernel: int = 7,
                          keep_k: int = 200) -> Tuple[tf.Tensor, tf.Tensor]:
  """Thresholds, max-pool NMS and top-k on a center heatmap (DeepLab2 semantics).

  A pixel is a center when its score is > `threshold` and equals the maximum of its
  `nms_kernel` x `nms_kernel` window (plateaus keep every tied pixel, as DeepLab2).
  The `keep_k` best are kept (exactly `keep_k`; ties by raster order) and returned
  in raster order, so instance k + 1 is the k-th center in raster order.

  Args:
    center_heatmap: [H, W, 1] float heatmap.
    threshold: minimum center score (exclusive).
    nms_kernel: odd NMS window size.
    keep_k: number of center slots K (static; > 0).

  Returns:
    centers: [K, 2] int32 (y, x); padded rows are -1.
    scores: [K] float32 heatmap values at the centers; padded rows are 0.
  """
  if keep_k <= 0 or nms_kernel % 2 != 1:
    raise ValueError(f'keep_k must be > 0 (got {keep_k}) and nms_kernel odd '
                     f'(got {nms_kernel}).')
  heat = tf.cast(center_heatmap, tf.float32)
  heat = tf.where(heat > threshold, heat, 0.0)
  # Max pooling is separable: a 1 x k then a k x 1 pass equal the k x k window.
  pooled = tf.nn.max_pool2d(heat[tf.newaxis], [1, nms_kernel], 1, 'SAME')
  pooled = tf.nn.max_pool2d(pooled, [nms_kernel, 1], 1, 'SAME')[0]
  heat = tf.where((heat == pooled) & (heat > 0.0), heat, 0.0)
  width = tf.shape(heat)[1]
  flat = tf.reshape(heat, [-1])
  num_pixels = tf.shape(flat)[0]
  # Zero padding makes top_k valid on images smaller than keep_k pixels.
  flat = tf.concat([flat, tf.zeros([keep_k], tf.float32)], axis=0)
  scores, indices = tf.math.top_k(flat, k=keep_k, sorted=True)
  valid = scores > 0.0
  # Raster order (DeepLab2's tf.where order), padding last.
  order = tf.argsort(tf.where(valid, indices, num_pixels + keep_k), stable=True)
  scores = tf.gather(scores, order)
  indices = tf.gather(indices, order)
  valid = tf.gather(valid, order)
  centers = tf.stack([indices // width, indices % width], axis=-1)
  centers = tf.where(valid[:, tf.newaxis], centers, -1)
  return centers, tf.where(valid, scores, 0.0)


def group_pixels_to_centers(centers: tf.Tensor,
                            offsets: tf.Tensor,
                            mask: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Assigns pixels to the center nearest to pixel + offset (class-agnostic).

  Only pixels in `mask` (the thing pixels, in practice ~10-40 % of an image) are
  gathered and grouped. A while loop over centers keeps a running minimum and
  stops after the last valid center, so padded slots cost nothing and memory is
  O(H * W) instead of DeepLab2's [K, H * W] distance matrix (1.7 GB at 1025x2049
  with K = 200). Exact ties go to the lower index, as DeepLab2's argmin. The
  data-dependent pixel count compiles under XLA as a bounded dynamic shape.

  Args:
    centers: [K, 2] int (y, x) centers; rows with y < 0 are padding.
    offsets: [H, W, 2] float (y, x) offsets in pixels, pointing to the center.
    mask: optional [H, W] bool, pixels to group (default: all).

  Returns:
    [H, W] int32 instance ids in 1..K (index of the nearest center + 1); 0 outside
    `mask` and everywhere when there is no valid center.
  """
  offsets = tf.cast(offsets, tf.float32)
  height, width = tf.shape(offsets)[0], tf.shape(offsets)[1]
  ys = tf.cast(tf.range(height), tf.float32)[:, tf.newaxis] + offsets[..., 0]
  xs = tf.cast(tf.range(width), tf.float32)[tf.newaxis, :] + offsets[..., 1]
  ys, xs = tf.reshape(ys, [-1]), tf.reshape(xs, [-1])
  if mask is not None:
    selected = tf.where(tf.reshape(mask, [-1]))[:, 0]
    ys, xs = tf.gather(ys, selected), tf.gather(xs, selected)
  centers = tf.cast(centers, tf.int32)
  num_slots = tf.shape(centers)[0]
  valid = centers[:, 0] >= 0
  num_used = tf.reduce_max(
      tf.where(valid, tf.range(num_slots, dtype=tf.int32) + 1, 0))
  # Padding rows are moved far away instead of being masked at every step.
  centers = tf.where(valid[:, tf.newaxis], tf.cast(centers, tf.float32), 1e9)

  def body(k, best, best_index):
    dist = (tf.math.squared_difference(ys, centers[k, 0]) +
            tf.math.squared_difference(xs, centers[k, 1]))
    best_index = tf.where(dist < best, k + 1, best_index)
    return k + 1, tf.minimum(dist, best), best_index

  num_pixels = tf.shape(ys)[0]
  _, _, index = tf.while_loop(
      lambda k, *_: k < num_used, body,
      (tf.constant(0), tf.fill([num_pixels], float('inf')),
       tf.zeros([num_pixels], tf.int32)),
      maximum_iterations=num_slots)
  if mask is not None:
    index = tf.scatter_nd(selected[:, tf.newaxis], index,
                          tf.cast([height * width], tf.int64))
  return tf.reshape(index, [height, width])


def _dim(x: tf.Tensor, axis: int):
  """Static size of `axis` when known (XLA needs constant sizes), else dynamic."""
  return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _histogram(values: tf.Tensor, size, weights=None) -> tf.Tensor:
  """[size] counts (int32) or weight sums of `values` in [0, size).

  DenseBincount is ~20x faster than unsorted_segment_sum on CPU and compiles in
  XLA when `size` is static (tf.math.bincount derives its size from the data).
  """
  weights = (tf.zeros([0], tf.int32) if weights is None
             else tf.reshape(weights, [-1]))
  return tf.raw_ops.DenseBincount(input=tf.reshape(values, [-1]), size=size,
                                  weights=weights, binary_output=False)


def _thing_mask(semantic: tf.Tensor, thing_ids: Sequence[int],
                num_classes) -> tf.Tensor:
  """[H, W] bool, True where `semantic` (in [0, num_classes)) is a thing class."""
  thing_ids = tf.constant(list(thing_ids) or [-1], tf.int32)
  is_thing_class = tf.reduce_any(
      tf.range(num_classes)[:, tf.newaxis] == thing_ids, axis=1)
  return tf.gather(is_thing_class, semantic)


def merge_semantic_and_instance(semantic: tf.Tensor,
                                instance: tf.Tensor,
                                thing_ids: Sequence[int],
                                label_divisor: int,
                                stuff_area_limit,
                                void_label: int,
                                num_classes: Optional[int] = None,
                                max_instance_id: Optional[int] = None
                                ) -> tf.Tensor:
  """Merges a semantic map and a class-agnostic instance map into a panoptic map.

  Follows DeepLab2's `merge_semantic_and_instance_maps` kernel (from DeeperLab):
    * thing pixels (semantic in `thing_ids`) of one class-agnostic instance all
      take the majority semantic class among the instance's thing pixels (ties go
      to the smaller class id); instance ids restart at 1 per class, in order of
      the class-agnostic id. Instance 0 is treated as one more instance, as in the
      kernel (it only holds thing pixels when no center was found);
    * stuff pixels get instance 0; a stuff class covering at most
      `stuff_area_limit` pixels of the image becomes void (limit 0 disables this).

  Worked example (DeepLab2's test), thing_ids=(2, 3), limit 3, divisor 256:
    semantic    instance    panoptic
    0 0 0 0     0 0 0 0     0     0      0     0
    0 1 1 0     0 0 0 0     0     void   void  0          (class 1: area 2 <= 3)
    0 2 2 0     0 1 1 0     0     2*256+1 2*256+1 0
    2 2 3 3     2 2 3 3     2*256+2 2*256+2 3*256+1 3*256+1

  Args:
    semantic: [H, W] int semantic train ids (>= 0).
    instance: [H, W] int class-agnostic instance ids (>= 0).
    thing_ids: train ids of thing classes.
    label_divisor: panoptic = class * label_divisor + instance id.
    stuff_area_limit: int or scalar tensor, see above.
    void_label: class written for removed stuff (void = void_label * divisor).
    num_classes: static bound on semantic ids (default: max(semantic) + 1). Give it
      (and `max_instance_id`) for XLA, which needs static histogram sizes.
    max_instance_id: static bound on instance ids (default: max(instance)).

  Returns:
    [H, W] int32 panoptic map.
  """
  semantic = tf.cast(semantic, tf.int32)
  instance = tf.cast(instance, tf.int32)
  num_classes = (tf.reduce_max(semantic) + 1 if num_classes is None
                 else num_classes)
  num_inst = (tf.reduce_max(instance) + 1 if max_instance_id is None
              else max_instance_id + 1)
  semantic = tf.clip_by_value(semantic, 0, num_classes - 1)
  instance = tf.clip_by_value(instance, 0, num_inst - 1)
  is_thing = _thing_mask(semantic, thing_ids, num_classes)
  # One histogram: rows 0..num_inst-1 count thing pixels per (instance, class);
  # the last row counts stuff pixels per class.
  segment = tf.where(is_thing, instance, num_inst) * num_classes + semantic
  counts = _histogram(segment, (num_inst + 1) * num_classes)
  counts = tf.reshape(counts, [num_inst + 1, num_classes])
  votes, stuff_area = counts[:-1], counts[-1]

  # Majority class, ties to the smaller id (tf.argmax leaves ties unspecified).
  most = tf.reduce_max(votes, axis=1, keepdims=True)
  reverse_ids = tf.range(num_classes, 0, -1, dtype=tf.int32)  # C .. 1
  majority = num_classes - tf.reduce_max(
      tf.where(votes == most, reverse_ids, 0), axis=1)
  present = most[:, 0] > 0
  one_hot = tf.one_hot(majority, num_classes, dtype=tf.int32)
  one_hot *= tf.cast(present, tf.int32)[:, tf.newaxis]
  new_id = tf.reduce_sum(tf.cumsum(one_hot, axis=0) * one_hot, axis=1)
  thing_label = majority * label_divisor + new_id  # [num_inst]

  stuff_area_limit = tf.cast(stuff_area_limit, tf.int32)
  remove = (stuff_area_limit > 0) & (stuff_area <= stuff_area_limit)
  stuff_label = tf.where(remove, void_label,
                         tf.range(num_classes)) * label_divisor  # [C]
  # A single gather by histogram cell: thing cells -> thing_label of the row.
  table = tf.concat([tf.repeat(thing_label, num_classes), stuff_label], axis=0)
  return tf.gather(table, segment)


def compute_instance_scores(semantic: tf.Tensor,
                            instance: tf.Tensor,
                            panoptic: tf.Tensor,
                            center_scores: tf.Tensor,
                            label_divisor: int,
                            from_logits: bool = False) -> tf.Tensor:
  """Instance confidence: mean probability of its class times its center score.

  As in Panoptic-DeepLab (Sec. 3.3): the semantic score is the average, over the
  instance's pixels, of the softmax probability of the class the instance was
  voted to; the center score is the heatmap value at its (NMS-surviving) center.
  (Detectron2's port reads the heatmap at the mask centroid instead; DeepLab2 uses
  the center score alone.)

  Args:
    semantic: [H, W, C] float class probabilities, or logits if `from_logits`.
    instance: [H, W] int class-agnostic ids in 0..K, 0 outside thing segments.
    panoptic: [H, W] int panoptic map from `merge_semantic_and_instance`.
    center_scores: [K] float score of center k (instance id k + 1).
    label_divisor: the panoptic label divisor.
    from_logits: `semantic` holds logits; only the voted class's probability is
      computed (exp(logit - logsumexp)), never the full softmax.

  Returns:
    [K] float32 scores; 0 for instances without pixels and padded slots.
  """
  num_slots = _dim(center_scores, 0)
  num_classes = _dim(semantic, -1)
  instance = tf.clip_by_value(tf.reshape(tf.cast(instance, tf.int32), [-1]),
                              0, num_slots)
  # Only instance pixels need a probability: gather them (a bounded dynamic
  # shape), then scatter back so the histograms below see static shapes.
  selected = tf.where(instance > 0)
  semantic = tf.gather_nd(tf.reshape(semantic, [-1, num_classes]), selected)
  semantic = tf.cast(semantic, tf.float32)
  cls = tf.gather_nd(tf.reshape(panoptic, [-1]), selected) // label_divisor
  cls = tf.clip_by_value(cls, 0, num_classes - 1)
  pixel_score = tf.gather(semantic, cls[:, tf.newaxis], batch_dims=1)[:, 0]
  if from_logits:
    pixel_score = tf.exp(pixel_score - tf.reduce_logsumexp(semantic, axis=1))
  pixel_score = tf.scatter_nd(selected, pixel_score,
                              tf.shape(instance, out_type=tf.int64))
  num_bins = num_slots + 1
  sums = _histogram(instance, num_bins, pixel_score)
  areas = _histogram(instance, num_bins, tf.ones_like(pixel_score))
  return (tf.math.divide_no_nan(sums[1:], areas[1:]) *
          tf.cast(center_scores, tf.float32))


def _post_process_one(semantic, center_heatmap, offsets, *, from_logits,
                      thing_ids, label_divisor, ignore_label, center_threshold,
                      nms_kernel, keep_k, stuff_area_limit, stuff_area_reference,
                      num_classes):
  """Post-processes one image ([H, W, C], [H, W, 1], [H, W, 2]); see below."""
  semantic = tf.cast(semantic, tf.float32)
  pred_semantic = tf.argmax(semantic, axis=-1, output_type=tf.int32)
  centers, center_scores = find_instance_centers(
      center_heatmap, center_threshold, nms_kernel, keep_k)
  num_classes = num_classes or tf.shape(semantic)[-1]
  instance = group_pixels_to_centers(
      centers, offsets, _thing_mask(pred_semantic, thing_ids, num_classes))
  if stuff_area_reference is not None:
    shape = tf.shape(pred_semantic)
    stuff_area_limit = scaled_stuff_area_limit(
        shape[0], shape[1], stuff_area_limit, stuff_area_reference)
  panoptic = merge_semantic_and_instance(
      pred_semantic, instance, thing_ids, label_divisor, stuff_area_limit,
      ignore_label, num_classes=num_classes, max_instance_id=keep_k)
  scores = compute_instance_scores(semantic, instance, panoptic, center_scores,
                                   label_divisor, from_logits)
  return {
      common.PRED_SEMANTIC: pred_semantic,
      common.PRED_INSTANCE: instance,
      common.PRED_PANOPTIC: panoptic,
      common.PRED_INSTANCE_SCORES: scores,
      common.PRED_CENTER_POINTS: centers,
  }


def panoptic_deeplab_post_process(
    semantic: tf.Tensor,
    center_heatmap: tf.Tensor,
    offsets: tf.Tensor,
    *,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    from_logits: bool = True,
    center_threshold: float = 0.1,
    nms_kernel: int = 7,
    keep_k: int = 200,
    stuff_area_limit: int = DEFAULT_STUFF_AREA_LIMIT,
    stuff_area_reference: Optional[Tuple[int, int]] = STUFF_AREA_REFERENCE_SIZE,
    ) -> Dict[str, tf.Tensor]:
  """Panoptic-DeepLab post-processing of a batch of raw outputs.

  Args:
    semantic: [B, H, W, C] semantic logits (`from_logits`) or probabilities.
    center_heatmap: [B, H, W, 1] center heatmap.
    offsets: [B, H, W, 2] (y, x) offsets in pixels, pointing to the center.
    thing_ids: train ids of thing classes.
    label_divisor: panoptic label divisor.
    ignore_label: void class for removed stuff segments.
    from_logits: whether `semantic` holds logits (softmaxed for the scores).
    center_threshold: minimum center heatmap score.
    nms_kernel: odd NMS window.
    keep_k: number of center slots K (static; outputs are padded to K).
    stuff_area_limit: stuff classes with at most this area become void.
    stuff_area_reference: (h, w) at which `stuff_area_limit` holds; the limit is
      scaled by the input's area. None uses `stuff_area_limit` as is.

  Returns:
    Dict with common.PRED_SEMANTIC [B, H, W] int32 (argmax),
    PRED_INSTANCE [B, H, W] int32 class-agnostic ids (1..K on thing pixels, else
    0), PRED_PANOPTIC [B, H, W] int32, PRED_INSTANCE_SCORES [B, K] float32 (score
    of instance k + 1; 0 if unused) and PRED_CENTER_POINTS [B, K, 2] int32 (y, x),
    -1 where unused.
  """
  num_classes = semantic.shape[-1]

  def one(args):
    return _post_process_one(
        *args, from_logits=from_logits, thing_ids=thing_ids,
        label_divisor=label_divisor, ignore_label=ignore_label,
        center_threshold=center_threshold, nms_kernel=nms_kernel,
        keep_k=keep_k, stuff_area_limit=stuff_area_limit,
        stuff_area_reference=stuff_area_reference, num_classes=num_classes)

  signature = {
      common.PRED_SEMANTIC: tf.TensorSpec([None, None], tf.int32),
      common.PRED_INSTANCE: tf.TensorSpec([None, None], tf.int32),
      common.PRED_PANOPTIC: tf.TensorSpec([None, None], tf.int32),
      common.PRED_INSTANCE_SCORES: tf.TensorSpec([keep_k], tf.float32),
      common.PRED_CENTER_POINTS: tf.TensorSpec([keep_k, 2], tf.int32),
  }
  return tf.map_fn(one, (semantic, center_heatmap, offsets),
                   fn_output_signature=signature)


@gin.register
@keras.saving.register_keras_serializable(package='naive_student')
class PanopticDeepLabPostProcessor(keras.layers.Layer):
  """Binds the arguments of `panoptic_deeplab_post_process` for a model's outputs.

  `call(outputs)` reads common.PRED_SEMANTIC_PROBS (e.g. from TTA) if present, else
  common.PRED_SEMANTIC_LOGITS, plus PRED_CENTER_HEATMAP and PRED_OFFSET, and
  returns the dict of `panoptic_deeplab_post_process`. Bind `thing_ids`,
  `label_divisor` and `ignore_label` from the dataset's `DatasetInfo`.
  """

  def __init__(self,
               thing_ids: Sequence[int],
               label_divisor: int = 1000,
               ignore_label: int = 255,
               center_threshold: float = 0.1,
               nms_kernel: int = 7,
               keep_k: int = 200,
               stuff_area_limit: int = DEFAULT_STUFF_AREA_LIMIT,
               stuff_area_reference: Optional[Tuple[int, int]] = (
                   STUFF_AREA_REFERENCE_SIZE),
               **kwargs):
    kwargs.setdefault('dtype', 'float32')  # Never autocast to a mixed policy.
    super().__init__(**kwargs)
    self._config = dict(
        thing_ids=tuple(int(i) for i in thing_ids),
        label_divisor=label_divisor, ignore_label=ignore_label,
        center_threshold=center_threshold, nms_kernel=nms_kernel,
        keep_k=keep_k, stuff_area_limit=stuff_area_limit,
        stuff_area_reference=(None if stuff_area_reference is None
                              else tuple(stuff_area_reference)))

  def call(self, outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    from_logits = common.PRED_SEMANTIC_PROBS not in outputs
    semantic = outputs[common.PRED_SEMANTIC_LOGITS if from_logits
                       else common.PRED_SEMANTIC_PROBS]
    return panoptic_deeplab_post_process(
        semantic, outputs[common.PRED_CENTER_HEATMAP],
        outputs[common.PRED_OFFSET], from_logits=from_logits, **self._config)

  def get_config(self):
    config = super().get_config()
    config.update(self._config)
    return config
