"""Command line of the pseudo-label stage: a Teacher labels frames into a folder.

  python -m official_naive_student.naive_student.pseudo_label_stage \
    --gin_file F --teacher_checkpoint DIR --output_dir DIR \
    [--shard i --num_shards n] [--cityscapes_root R --split train-sequence] \
    [--hidden_gt_root G] [--overwrite] [--merge_only --dataset_name D]

`pseudo_label` (`pseudo_labeling`) is bound by the gin files, as in a chain;
without `--cityscapes_root` the gin files also bind its records. Independent
processes with other `--shard`s share the work; the last one merges the json
(`label_folder`). This module registers nothing with gin, so gin files never
import it and running it as `__main__` loads the library once.
"""

import json
import sys
from typing import Optional, Sequence

from absl import app
from absl import flags
import gin

from official_naive_student import datasets
from official_naive_student.core import gin_utils
from official_naive_student.dataloaders import cityscapes_files
from official_naive_student.naive_student import label_folder
from official_naive_student.naive_student import label_quality
from official_naive_student.naive_student import pseudo_labeling


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """The command's flags, on `flag_values`."""
  define = dict(flag_values=flag_values)
  flags.DEFINE_multi_string('gin_file', [], 'Gin config files.', **define)
  flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.', **define)
  flags.DEFINE_string('teacher_checkpoint', None, 'Checkpoint prefix, its '
                      'folder or the Teacher\'s model_dir.', **define)
  flags.DEFINE_string('output_dir', None, 'The pseudo-label folder.', **define)
  flags.DEFINE_string('hidden_gt_root', None, 'Ground truth of every frame, '
                      'to print the labels\' quality.', **define)
  flags.DEFINE_string('cityscapes_root', None, 'Label the frames of --split '
                      'here (default: the records gin binds).', **define)
  flags.DEFINE_string('split', 'train-sequence', 'Split(s) under '
                      '--cityscapes_root.', **define)
  flags.DEFINE_integer('shard', 0, 'This process\'s shard.', **define)
  flags.DEFINE_integer('num_shards', 1, 'Processes sharing the frames.',
                       **define)
  flags.DEFINE_boolean('merge_only', False, 'Only merge finished shards.',
                       **define)
  flags.DEFINE_boolean('overwrite', False, 'Delete the labels in --output_dir '
                       'and start over (run alone, not next to other shards).',
                       **define)
  flags.DEFINE_string('dataset_name', 'cityscapes', 'Label space of the labels '
                      '(cityscapes, camvid, synthetic), for --merge_only and '
                      '--hidden_gt_root.', **define)
  flags.mark_flag_as_required('output_dir', flag_values=flag_values)


def run(values: flags.FlagValues) -> int:
  """Labels (or merges) as the parsed flags say; the exit code."""
  gin_utils.parse_gin(values.gin_file, values.gin_bindings)
  info = datasets.get_dataset_info(values.dataset_name)
  if values.merge_only:
    label_folder.merge_pseudo_labels(values.output_dir, info)
  else:
    kwargs = {}
    if values.cityscapes_root:
      kwargs['records'] = cityscapes_files.find_records(values.cityscapes_root,
                                                        values.split)
    try:
      finished = gin.get_configurable(pseudo_labeling.pseudo_label)(
          values.teacher_checkpoint, values.output_dir, shard=values.shard,
          num_shards=values.num_shards, overwrite=values.overwrite, **kwargs)
    except pseudo_labeling.SettingsMismatchError as e:
      print(e, file=sys.stderr, flush=True)
      return 1
    if finished is None:
      print(f'{values.output_dir}: shard {values.shard} done, others pending')
      return 0
  print(f'{values.output_dir}: done')
  if values.hidden_gt_root:
    quality = label_quality.measure_pseudo_label_quality(
        label_folder.panoptic_json_path(values.output_dir),
        values.hidden_gt_root, dataset=info)
    print(json.dumps(quality, sort_keys=True))
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command with `argv` (flags, without the program name)."""
  values = flags.FlagValues()
  define_flags(values)
  values(['pseudo_label_stage', *(argv or [])])
  return run(values)


if __name__ == '__main__':
  define_flags()
  app.run(lambda argv: run(flags.FLAGS))
