"""A chain stage that trains nothing: its model is an imported checkpoint.

Bound as `run_naive_student.teacher_stage`, it starts the chain at iteration 1
with a Teacher made elsewhere, e.g. DeepLab2's published Cityscapes WR-41
imported by `tools/import_checkpoint.py`
(`gin/cityscapes/naive_student_from_deeplab2.gin`). A module of its own, without
command-line flags, so that gin files can import it into any program.
"""

from typing import Any, Dict, Optional

import gin

from official_naive_student.core import inference


@gin.configurable
def imported_stage(model_dir: str, checkpoint: str = gin.REQUIRED,
                   init_checkpoint: Optional[str] = None) -> Dict[str, Any]:
  """The result of a stage that made `checkpoint` (prefix or folder)."""
  del model_dir, init_checkpoint
  return {'checkpoint': inference.resolve_checkpoint(checkpoint),
          'metrics': None, 'step': 0}
