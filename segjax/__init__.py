"""segjax: semantic, panoptic and volumetric segmentation in JAX/Flax.

The package is organised by seam (see docs/design.md): `segjax.registry` (every
extension point), `segjax.config` (the config schema), `segjax.models`
(layers, encoders, decoders, whole networks), `segjax.data` (sources,
transforms, grain pipelines, known datasets), `segjax.losses`,
`segjax.optim`, `segjax.metrics`, `segjax.inference` (sliding window, TTA,
CRF), `segjax.evaluation` (the one evaluator), `segjax.checkpoints` (weights on
disk), `segjax.train` (train state, sharded steps, checkpoints, the loop).

Importing `segjax` builds no model, never imports PyTorch and changes no
process-wide JAX state: entry points apply `config.runtime` with
`segjax.runtime.configure(config)`.
"""

__version__ = "0.1.0"
