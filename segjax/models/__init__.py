"""Models: the registry, shared layers, encoders, decoders and whole networks.

`build(config.model)` returns a flax.linen Module whose `__call__(x, *, train)`
returns a dict with "logits". `python -m segjax.models` lists every registered
model with its parameter count at its paper's configuration.
"""

from segjax.models.registry import build, build_part, get, names, register  # noqa: F401
