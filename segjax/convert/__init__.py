"""PyTorch -> Flax weight conversion: `core` (the mechanism) and one mapping per family.

    python -m segjax.convert --checkpoint resnet50.pth --config configs/X.py:arg --output DIR

See `segjax.convert.core` for the mechanism and how to add a mapping; every
mapping module is imported here so that it registers. torch is imported only
when a checkpoint is read (`segjax.convert.io`), never on segjax's import path.
"""

from segjax.convert.core import (IGNORE, ConversionError, Report, Target,  # noqa: F401
                                 chain, convert, get_mapping, mapping_names, mappings_for,
                                 prefixed, register_mapping, rules)

# pylint: disable=unused-import
from segjax.convert import resnet  # noqa: F401,E402
from segjax.convert import vgg, segmentation  # noqa: F401,E402
from segjax.convert import mobilenet  # noqa: F401,E402
from segjax.convert import xception  # noqa: F401,E402
from segjax.convert import smp_unet  # noqa: F401,E402
