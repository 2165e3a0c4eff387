"""Panoptic segmentation: Panoptic-DeepLab's losses, post-processing and panoptic quality.

- `losses`: the registered loss terms "bootstrapped_cross_entropy", "center_mse",
  "offset_l1" (config.loss.name joins them with '+').
- `postprocess`: semantic logits + centre heatmap + offsets -> instance and
  panoptic maps, jit-compiled (config.eval.panoptic holds the thresholds).
- `quality`: PQ, SQ and RQ per class and over things and stuff.
- `visualize`: panoptic maps as PNGs, instance colours over the class palette.

The data side (instance maps, targets, the "panoptic_folder" source) is
`segjax.data.panoptic`.
"""
