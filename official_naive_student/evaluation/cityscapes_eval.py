"""Scores Cityscapes-format result files like the three official evaluators, faster.

Reads the files `cityscapes_results` writes (the official formats) and the
gtFine ground truth, and gives the numbers of `evalPixelLevelSemanticLabeling`
(mIoU), `evalInstanceLevelSemanticLabeling` (AP, AP50) and
`evalPanopticSemanticLabeling` (PQ, SQ, RQ) in one pass: each file is decoded
at most once (`png_io`: no extra copies, instance masks only within their
bounding box), frames run in a process pool and all matching is done with
`np.bincount`. When instances are evaluated too, the gt panoptic segments are
read off the instanceIds already decoded instead of off their own PNG, after
checking them against the gt json (ids and areas); if they disagree, the PNG
is decoded as the official evaluator does. (The gt labelIds could be derived
from the instanceIds as well, but nothing short of decoding them shows that
they agree, so they are decoded.)

  python -m official_naive_student.evaluation.cityscapes_eval \
      --gt_root /data/cityscapes --split val --semantic_dir results/semantic \
      --instance_dir results/instance --panoptic_json results/panoptic.json \
      --panoptic_dir results/panoptic --output_json results/metrics.json
"""

import functools
import glob
import json
import multiprocessing
import os
import re
from typing import Dict, List, Optional

import numpy as np
from cityscapesscripts.helpers import labels as cs_labels

from official_naive_student import datasets
from official_naive_student.evaluation import cityscapes_results
from official_naive_student.evaluation import instance_ap
from official_naive_student.evaluation import panoptic_quality
from official_naive_student.evaluation import png_io
from official_naive_student.evaluation import semantic_iou

RESULT_KEYS = ('PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff', 'mIoU', 'AP', 'AP50')
_KNOWN_LABEL_IDS = np.array(sorted(cs_labels.id2label), np.int64)
_ID_PREFIX = re.compile(r'^([^_]+_\d+_\d+)')


def _prediction_index(root: str, ext: str) -> Dict[str, List[str]]:
  """image id -> files under `root` named `<image_id>*<ext>` (recursive)."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f'{root}: prediction folder does not exist')
  index: Dict[str, List[str]] = {}
  for dirpath, _, filenames in os.walk(root):
    for filename in filenames:
      match = _ID_PREFIX.match(filename)
      if match and filename.endswith(ext):
        index.setdefault(match.group(1), []).append(
            os.path.join(dirpath, filename))
  return index


def _find_prediction(index, root: str, image_id: str, gt_file: str,
                     ext: str) -> str:
  files = index.get(image_id, [])
  if not files:
    raise FileNotFoundError(f'{root}: no prediction {image_id}*{ext} for ground '
                            f'truth {gt_file}')
  if len(files) > 1:
    raise ValueError(f'{root}: several predictions for {gt_file}: {files}')
  return files[0]


def read_instance_txt(path: str, root: str):
  """[(mask path, label id, score)] from one official instance txt file."""
  root = os.path.abspath(root)
  predictions = {}
  with open(path) as f:
    for line_number, line in enumerate(f, 1):
      if not line.strip():
        continue
      fields = line.rstrip('\n').split(' ')
      if len(fields) != 3:
        raise ValueError(f'{path}:{line_number}: expected "relative/mask.png '
                         f'<labelId> <confidence>", got {line!r}')
      if os.path.isabs(fields[0]):
        raise ValueError(f'{path}:{line_number}: mask path must be relative')
      mask = os.path.abspath(os.path.join(os.path.dirname(path), fields[0]))
      if os.path.commonprefix([mask, root]) != root:
        raise ValueError(f'{path}:{line_number}: {mask} is outside {root}')
      # A dict, as in the official reader: a repeated mask counts once.
      predictions[mask] = (int(float(fields[1])), float(fields[2]))
  return [(m, label, score) for m, (label, score) in predictions.items()]


def frame_tasks(gt_root: str, split: str, semantic_dir, instance_dir,
                panoptic_json, panoptic_dir, dataset) -> List[dict]:
  """One dict of file paths (and panoptic segment lists) per evaluated frame."""
  gt_dir = os.path.join(gt_root, 'gtFine', split)
  tasks: Dict[str, dict] = {}
  if semantic_dir or instance_dir:
    suffix = '_gtFine_labelIds.png' if semantic_dir else '_gtFine_instanceIds.png'
    gt_files = sorted(glob.glob(os.path.join(gt_dir, '*', '*' + suffix)))
    if not gt_files:
      raise FileNotFoundError(f'{gt_dir}: no */*{suffix} ground truth')
    for kind, root, ext in (('semantic', semantic_dir, '.png'),
                            ('instance', instance_dir, '.txt')):
      if not root:
        continue
      index = _prediction_index(root, ext)
      for gt_file in gt_files:
        image_id = os.path.basename(gt_file)[:-len(suffix)]
        task = tasks.setdefault(image_id, {'image_id': image_id})
        task[f'gt_{kind}'] = gt_file.replace(suffix, '_gtFine_labelIds.png'
                                             if kind == 'semantic' else
                                             '_gtFine_instanceIds.png')
        task[kind] = _find_prediction(index, root, image_id, gt_file, ext)
        if kind == 'instance':
          task['instance_root'] = root
  if panoptic_json or panoptic_dir:
    if not (panoptic_json and panoptic_dir):
      raise ValueError('--panoptic_json and --panoptic_dir go together')
    gt_json = os.path.join(gt_root, 'gtFine', f'cityscapes_panoptic_{split}.json')
    gt_pan_dir = os.path.splitext(gt_json)[0]
    for path in (gt_json, panoptic_json):
      if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: panoptic json does not exist')
    with open(gt_json) as f:
      gt = json.load(f)
    with open(panoptic_json) as f:
      pred = {a['image_id']: a for a in json.load(f)['annotations']}
    label_to_train = {int(l): t for t, l in enumerate(
        dataset.train_id_to_label_id)}
    categories = {c['id'] for c in gt['categories']}

    def train_id(category_id, where):
      if category_id not in categories or category_id not in label_to_train:
        raise ValueError(f'{where}: unknown category_id {category_id}')
      return label_to_train[category_id]

    for gt_ann in gt['annotations']:
      image_id = gt_ann['image_id']
      if image_id not in pred:
        raise FileNotFoundError(f'{panoptic_json}: no annotation for ground '
                                f'truth image {image_id}')
      pred_ann = pred[image_id]
      pred_png = os.path.join(panoptic_dir, pred_ann['file_name'])
      task = tasks.setdefault(image_id, {'image_id': image_id})
      task['gt_panoptic'] = os.path.join(gt_pan_dir, gt_ann['file_name'])
      task['panoptic'] = pred_png
      task['gt_segments'] = [
          (s['id'], train_id(s['category_id'], gt_json), s['iscrowd'],
           s.get('area')) for s in gt_ann['segments_info']]
      task['pred_segments'] = [
          (s['id'], train_id(s['category_id'], f'{panoptic_json} ({image_id})'))
          for s in pred_ann['segments_info']]
  return [tasks[k] for k in sorted(tasks)]


def panoptic_gt_rows(gt: instance_ap.IndexedInstanceIds,
                     gt_segments) -> Optional[np.ndarray]:
  """Each instanceIds value's gt panoptic segment (1 + json position), or None.

  createPanopticImgs gives every instanceIds value v whose label is evaluated
  the segment id v, makes the others void (0 here), and lists each segment in
  its json with its area. When that json agrees with this instanceIds map (same
  ids, same areas), this lookup applied to `gt.compact` is the panoptic PNG's
  content, so decoding that PNG can be skipped; otherwise None.

  Args:
    gt: the frame's indexed instanceIds.
    gt_segments: (id, class index, is crowd, area) per gt json segment.
  """
  values = gt.values
  label = np.where(values < 1000, values, values // 1000)
  if not np.isin(label, _KNOWN_LABEL_IDS).all():
    return None  # createPanopticImgs would have failed on this map.
  kept = ~np.isin(label, instance_ap.VOID_LABEL_IDS)
  listed = np.array([s[0] for s in gt_segments], np.int64)
  areas = [s[3] if len(s) > 3 else None for s in gt_segments]
  if listed.size != kept.sum() or None in areas:
    return None
  at = np.minimum(np.searchsorted(values, listed), max(values.size - 1, 0))
  if (values.size == 0 or not np.array_equal(values[at], listed)
      or not kept[at].all() or np.unique(at).size != at.size
      or not np.array_equal(gt.pixels[at], np.array(areas, np.int64))):
    return None
  rows = np.zeros((values.size,), np.int64)
  rows[at] = np.arange(1, listed.size + 1)
  return rows


def evaluate_frame(task: dict, dataset=datasets.CITYSCAPES) -> dict:
  """Statistics of one frame for whichever kinds `task` names."""
  out = {}
  if 'semantic' in task:
    pred = png_io.read_png(task['semantic'])
    out['confusion'] = semantic_iou.label_id_confusion(
        png_io.read_png(task['gt_semantic']), pred, dataset,
        name=task['semantic'])
  gt = None
  if 'instance' in task:
    gt = instance_ap.index_instance_ids(png_io.read_png(task['gt_instance']))
    height, width = gt.compact.shape
    masks, labels, scores = [], [], []
    for mask_path, label_id, score in read_instance_txt(task['instance'],
                                                        task['instance_root']):
      if label_id not in instance_ap.INSTANCE_LABEL_IDS:
        continue  # The official evaluator does not read these masks.
      if not os.path.isfile(mask_path):
        raise FileNotFoundError(f'{task["instance"]}: mask {mask_path} missing')
      mask, size = png_io.read_mask(mask_path)
      if size != (width, height):
        raise ValueError(f'{mask_path}: size {size[1]}x{size[0]} != ground truth '
                         f'{height}x{width}')
      if mask is not None:
        masks.append(mask)
        labels.append(label_id)
        scores.append(score)
    out['matches'] = instance_ap.match_masks(gt, masks, labels, scores,
                                             name=task['instance'])
  if 'panoptic' in task:
    pred_ids = png_io.read_segment_ids(task['panoptic'])
    rows = None if gt is None else panoptic_gt_rows(gt, task['gt_segments'])
    if rows is None:
      out['pq'] = panoptic_quality.segment_frame_stats(
          png_io.read_segment_ids(task['gt_panoptic']), task['gt_segments'],
          pred_ids, task['pred_segments'], dataset.num_classes,
          name=task['panoptic'])
    else:
      out['pq'] = panoptic_quality.indexed_frame_stats(
          gt.compact, task['gt_segments'], pred_ids, task['pred_segments'],
          dataset.num_classes, name=task['panoptic'], gt_rows=rows)
  return out


def evaluate(gt_root: str, split: str = 'val', semantic_dir: str = None,
             instance_dir: str = None, panoptic_json: str = None,
             panoptic_dir: str = None, num_workers: int = 2,
             dataset: datasets.DatasetInfo = datasets.CITYSCAPES) -> dict:
  """Evaluates the given prediction kinds; returns metrics in percent.

  Returns:
    {'metrics': {key: value or None for RESULT_KEYS}, 'semantic': ...,
     'panoptic': ..., 'instance': ...} where the last three hold the
    accumulators' full results (per class) for the kinds evaluated.
  """
  tasks = frame_tasks(gt_root, split, semantic_dir, instance_dir,
                      panoptic_json, panoptic_dir, dataset)
  miou, pq, ap = (semantic_iou.SemanticIoU(dataset),
                  panoptic_quality.PanopticQuality(dataset),
                  instance_ap.InstanceAP(dataset))
  if num_workers > 1 and len(tasks) > 1:
    # A few chunks per worker: fewer round trips, still balanced at the end.
    chunk = max(1, len(tasks) // (num_workers * 4))
    with multiprocessing.Pool(min(num_workers, len(tasks))) as pool:
      frames = list(pool.imap(functools.partial(evaluate_frame, dataset=dataset),
                              tasks, chunksize=chunk))
  else:
    frames = [evaluate_frame(t, dataset) for t in tasks]
  for frame in frames:
    if 'confusion' in frame:
      miou.add_confusion(frame['confusion'])
    if 'matches' in frame:
      ap.add_matches(frame['matches'])
    if 'pq' in frame:
      pq.add_stats(frame['pq'])
  results = {'metrics': {k: None for k in RESULT_KEYS}}
  if semantic_dir:
    results['semantic'] = miou.result()
    results['metrics']['mIoU'] = results['semantic']['mIoU']
  if instance_dir:
    results['instance'] = ap.result()
    results['metrics'].update(AP=results['instance']['AP'],
                              AP50=results['instance']['AP50'])
  if panoptic_json:
    results['panoptic'] = pq.result()
    for key in ('PQ', 'SQ', 'RQ', 'PQ_things', 'PQ_stuff'):
      results['metrics'][key] = results['panoptic'][key]
  return results


def format_table(results: dict, dataset=datasets.CITYSCAPES) -> str:
  """Per-class and average numbers of `evaluate` as a text table."""
  def cell(value):
    return f'{value:7.2f}' if value is not None else '      -'
  lines = [f'{"class":<15}{"IoU":>7}{"PQ":>7}{"SQ":>7}{"RQ":>7}{"AP":>7}'
           f'{"AP50":>7}']
  for name in dataset.class_names:
    iou = results.get('semantic', {}).get('per_class', {}).get(name)
    pan = results.get('panoptic', {}).get('per_class', {}).get(name) or {}
    ins = results.get('instance', {}).get('per_class', {}).get(name) or {}
    lines.append(f'{name:<15}' + ''.join(cell(v) for v in (
        iou, pan.get('PQ'), pan.get('SQ'), pan.get('RQ'), ins.get('AP'),
        ins.get('AP50'))))
  lines.append('-' * 57)
  lines.append('  '.join(f'{k} {cell(v).strip()}'
                         for k, v in results['metrics'].items()))
  return '\n'.join(lines)


def write_metrics_json(path: str, metrics: Dict[str, Optional[float]]):
  """Writes the metrics dict atomically (temp file + rename)."""
  cityscapes_results.save_text(json.dumps(metrics, indent=2, sort_keys=True),
                               path)


def define_result_file_flags():
  """The flags naming ground truth and result files (also `official_scripts`')."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('gt_root', None, 'Cityscapes root holding gtFine/<split>.')
  flags.DEFINE_string('split', 'val', 'gtFine split to evaluate.')
  flags.DEFINE_string('semantic_dir', None, 'Label-id PNG results folder.')
  flags.DEFINE_string('instance_dir', None, 'Instance txt + mask results folder.')
  flags.DEFINE_string('panoptic_json', None, 'Predicted COCO panoptic json.')
  flags.DEFINE_string('panoptic_dir', None, 'Predicted panoptic PNG folder.')
  flags.DEFINE_string('output_json', None, 'Where to write the metrics json.')
  flags.mark_flag_as_required('gt_root')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  define_result_file_flags()
  flags.DEFINE_integer('num_workers', 2, 'Processes decoding frames.')
  FLAGS = flags.FLAGS

  def main(argv):
    del argv
    results = evaluate(FLAGS.gt_root, FLAGS.split, FLAGS.semantic_dir,
                       FLAGS.instance_dir, FLAGS.panoptic_json,
                       FLAGS.panoptic_dir, FLAGS.num_workers)
    print(format_table(results))
    if FLAGS.output_json:
      write_metrics_json(FLAGS.output_json, results['metrics'])

  app.run(main)
