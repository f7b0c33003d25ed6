"""String keys of every feature, label and prediction dict, so no module spells them twice.

Conventions used across the project:
  * images are float32 [B, H, W, 3] in [0, 255] (the model normalizes);
  * panoptic ids are int32 `semantic_train_id * label_divisor + instance_id`,
    instance_id 0 for stuff and crowd, void = `ignore_label * label_divisor`;
  * offsets are float32 [B, H, W, 2] in pixels, (y, x) order, pointing from a pixel
    to its instance center (center - pixel), as in Panoptic-DeepLab and DeepLab2.
"""

# Inputs / ground truth produced by the data pipeline.
IMAGE = 'image'
IMAGE_NAME = 'image_name'
SEQUENCE_ID = 'sequence_id'
GT_PANOPTIC = 'panoptic'
GT_SEMANTIC = 'semantic'
GT_SEMANTIC_WEIGHTS = 'semantic_weights'
GT_CENTER_HEATMAP = 'center_heatmap'
GT_CENTER_WEIGHTS = 'center_weights'
GT_OFFSET = 'offset'
GT_OFFSET_WEIGHTS = 'offset_weights'

# Raw model outputs (training=True and the inputs of post-processing).
PRED_SEMANTIC_LOGITS = 'semantic_logits'
PRED_CENTER_HEATMAP = 'center_heatmap'
PRED_OFFSET = 'offset'

# Post-processed outputs (inference, evaluation, pseudo-labels, serving).
PRED_SEMANTIC_PROBS = 'semantic_probs'
PRED_SEMANTIC = 'semantic'
PRED_INSTANCE = 'instance'
PRED_PANOPTIC = 'panoptic'
PRED_INSTANCE_SCORES = 'instance_scores'
PRED_CENTER_POINTS = 'center_points'

# Backbone endpoint names (the contract between backbones and decoders).
RES2 = 'res2'
RES3 = 'res3'
RES4 = 'res4'
RES5 = 'res5'

# Loss dict keys.
LOSS_TOTAL = 'total_loss'
LOSS_SEMANTIC = 'semantic_loss'
LOSS_CENTER = 'center_loss'
LOSS_OFFSET = 'offset_loss'

# Checkpoint item names (for partial restores).
CKPT_MODEL = 'model'
# The sub-folder of a trainer's model_dir holding its checkpoints.
CHECKPOINT_SUBDIR = 'checkpoints'
