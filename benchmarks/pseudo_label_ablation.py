r"""Pseudo-label quality with and without TTA and the ego-car void (Table 3, our data).

For each Teacher of a finished (or running) Naive-Student chain on the synthetic
video, labels the same unlabeled frames four ways -- {single scale, the chain's
TTA} x {ego car void, not} -- and rates each against the generator's hidden
ground truth of every frame (PQ, mIoU). Ego-car pixels are void in that ground
truth, so PQ/mIoU cannot see the ego car; the table therefore also gives
`ego_labeled_%`: the share of ego-car pixels that carry a class in the labels
(what a Student would be taught about the hood when the void is off).

  python benchmarks/pseudo_label_ablation.py --model_dir runs/demo \
      --gin_file gin/demo/naive_student.gin [--max_sequences 4]
"""

import os
import sys
import tempfile

from absl import app
from absl import flags
import gin

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from official_naive_student import datasets
from official_naive_student.core import file_io
from official_naive_student.core import gin_utils
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.dataloaders import decode
from official_naive_student.dataloaders.synthetic import writer
from official_naive_student.naive_student import ego_car
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import loop
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import pseudo_labeling

_MODEL_DIR = flags.DEFINE_string('model_dir', None, 'The chain folder.',
                                 required=True)
_GIN_FILE = flags.DEFINE_multi_string('gin_file', ['demo/naive_student.gin'],
                                      'The chain config.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
_CLASSES = flags.DEFINE_list(
    'classes', ['pole', 'traffic light', 'person', 'bus'],
    'Classes whose IoU and labeled/true pixel ratio are also printed.')
_VOID_VARIANTS = flags.DEFINE_multi_enum(
    'ego_car_void', ['yes', 'no'], ['yes', 'no'],
    'Ego-car void variants to label (repeat the flag for both).')
_MAX_SEQUENCES = flags.DEFINE_integer(
    'max_sequences', 4, 'Label the frames of this many snippets (0: all).')


def _teachers(model_dir):
  """(iteration, checkpoint) of each iteration's Teacher, from summary.json."""
  rows = file_io.read_json(os.path.join(model_dir, loop.SUMMARY_FILE))
  by_stage = {(r['iteration'], r['stage']): r['checkpoint'] for r in rows}
  iteration, result = 1, []
  while (iteration, 'pseudo_label') in by_stage:
    stage = (0, 'teacher') if iteration == 1 else (iteration - 1, 'finetune')
    result.append((iteration, os.path.join(model_dir, by_stage[stage])))
    iteration += 1
  return result


def _ego_labeled_share(output_dir, records, info):
  """% of ego-car pixels (from each snippet's labeled frame) given a class."""
  masks = ego_car.snippet_masks(records)
  labels = cityscapes_files.read_panoptic_json(label_folder.panoptic_json_path(output_dir))
  ego = labeled = 0
  for record in records:
    mask = ego_car.mask_for(record, masks)
    if mask is None:
      continue
    png, segments = labels[record.image_id]
    panoptic = decode.decode_panoptic_png(png, segments, info)
    ego += mask.sum()
    labeled += (panoptic[mask] // info.label_divisor != info.ignore_label).sum()
  return 100.0 * labeled / max(ego, 1)


def main(argv):
  del argv
  gin_utils.parse_gin(_GIN_FILE.value, _GIN_BINDINGS.value)
  label = gin.get_configurable(pseudo_labeling.pseudo_label)
  tta_scales = tuple(gin.query_parameter('pseudo_label.scales'))
  tta_flip = bool(gin.query_parameter('pseudo_label.flip'))
  with gin.config_scope('unlabeled'):
    records = gin.get_configurable(cityscapes_files.find_records)()
  hidden_root = gin.get_configurable(writer.synthetic_hidden_gt_root)()
  records = [r for r in records if r.split.endswith('-sequence')]  # Videos.
  sequences = sorted({r.sequence_id for r in records if r.sequence_id})
  if _MAX_SEQUENCES.value:
    keep = set(sequences[:_MAX_SEQUENCES.value])
    records = [r for r in records if r.sequence_id in keep]
  print(f'{len(records)} frames of {min(len(sequences), _MAX_SEQUENCES.value or 10**9)} '
        f'snippets; TTA = scales {tuple(tta_scales)} flip {tta_flip}')
  extra = ''.join(f' {c} IoU / ratio |' for c in _CLASSES.value)
  print('| iteration | TTA | ego-car void | PQ | mIoU | ego_labeled_% |' + extra)
  print('|---|---|---|---:|---:|---:|' + '---:|' * len(_CLASSES.value))
  for iteration, checkpoint in _teachers(_MODEL_DIR.value):
    for tta in (False, True):
      for void in [v == 'yes' for v in _VOID_VARIANTS.value]:
        with tempfile.TemporaryDirectory() as out:
          label(checkpoint, out, records=records,
                scales=tta_scales if tta else (1.0,),
                flip=tta_flip and tta, ego_car_void=void)
          quality = label_quality.measure_pseudo_label_quality(
              label_folder.panoptic_json_path(out), hidden_root)
          share = _ego_labeled_share(out, records, datasets.SYNTHETIC)
        cells = ''.join(
            f' {quality["class_IoU"][c] or 0:.1f} / '
            f'{quality["class_pixel_ratio"][c] or 0:.2f} |'
            for c in _CLASSES.value)
        print(f'| {iteration} | {"yes" if tta else "no"} | '
              f'{"yes" if void else "no"} | {quality["PQ"]:.2f} | '
              f'{quality["mIoU"]:.2f} | {share:.1f} |' + cells, flush=True)
  return 0


if __name__ == '__main__':
  app.run(main)
