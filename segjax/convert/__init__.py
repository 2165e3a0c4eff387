"""PyTorch -> Flax weight conversion: `core` (the mechanism) and one mapping per family.

    python -m segjax.convert --checkpoint resnet50.pth --config configs/X.py:arg --output DIR

See `segjax.convert.core` for the mechanism and how to add a mapping; mapping
modules register in `segjax.registry` (kind "mapping") and are found by
discovery, so a new one is a new file here. torch is imported only
when a checkpoint is read (`segjax.convert.io`), never on segjax's import path.
"""

from segjax.convert.core import (IGNORE, ConversionError, Report, Target,  # noqa: F401
                                 chain, convert, get_mapping, mapping_names, mappings_for,
                                 prefixed, register_mapping, rules, with_prepare)
