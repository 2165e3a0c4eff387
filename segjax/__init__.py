"""segjax: semantic, panoptic and volumetric segmentation in JAX/Flax.

The package is organised by seam (see ../shared/DESIGN.md):
`segjax.models` (registry, layers, encoders, decoders, whole-network models),
`segjax.data` (sources, transforms, grain pipelines), `segjax.train` (state,
step, loop, sharding, checkpoints), `segjax.losses`, `segjax.metrics`,
`segjax.inference`. Importing `segjax` builds no model and never imports
PyTorch.

PRNG: segjax makes JAX's default PRNG implementation "rbg" (XLA's
RngBitGenerator) unless the user chose one with JAX_DEFAULT_PRNG_IMPL. XLA
compiles the default threefry generator very slowly on CPU: a jitted
`model.init` of a small U-Net compiled in 67-107 s with threefry and 10 s with
rbg on the 2-core machines here; rbg is also the generator big_vision and t5x
use on TPUs. Keys made with `jax.random.PRNGKey` after importing segjax are rbg
keys (shape (4,)).

Host memory: on glibc systems, importing segjax makes every XLA compile
return the heap its compiler freed to the operating system before the
compiled program runs (`segjax.host_memory`).
"""

import os as _os

import jax as _jax

if "JAX_DEFAULT_PRNG_IMPL" not in _os.environ:
    _jax.config.update("jax_default_prng_impl", "rbg")

from segjax import host_memory as _host_memory

_host_memory.trim_after_each_compile()

__version__ = "0.1.0"
