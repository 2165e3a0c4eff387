"""Panoptic segmentation: Panoptic-DeepLab's losses, post-processing and panoptic quality.

- `losses`: the registered loss terms "bootstrapped_cross_entropy", "center_mse",
  "offset_l1" (config.loss.name joins them with '+').
- `postprocess`: semantic logits + centre heatmap + offsets -> instance and
  panoptic maps, jit-compiled (config.eval.panoptic holds the thresholds).
- `quality`: PQ, SQ and RQ per class and over things and stuff.

The data side (instance maps, targets, the "panoptic_folder" source) is
`segjax.data.panoptic`; the evaluator (`segjax.evaluation`) runs the
post-processing and PQ for models that return "center" and "offset";
panoptic pictures (instance colours over the class palette) are in
`segjax.visualize`.
"""
