"""segjax: semantic, panoptic and volumetric segmentation in JAX/Flax.

The package is organised by seam (see docs/DESIGN in ../shared/DESIGN.md):
`segjax.models` (registry, layers, encoders, decoders, whole-network models),
`segjax.data` (sources, transforms, grain pipelines), `segjax.train` (state,
step, loop, sharding, checkpoints), `segjax.losses`, `segjax.metrics`,
`segjax.inference`. Importing `segjax` is cheap: no model is built and no
PyTorch is imported.
"""

__version__ = "0.1.0"
