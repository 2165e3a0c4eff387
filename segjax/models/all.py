"""Imports every built-in architecture so that it registers itself.

Add a line here when a new encoder, decoder or model file lands in
segjax/models; user code outside segjax registers through config.imports.
"""

# pylint: disable=unused-import
from segjax.models import segmenter  # noqa: F401  (heads, the generic segmenter)
from segjax.models import composite  # noqa: F401
from segjax.models import unet  # noqa: F401
from segjax.models.encoders import vgg  # noqa: F401
from segjax.models.decoders import fcn, deeplab  # noqa: F401
from segjax.models import torchvision_models  # noqa: F401
from segjax.models.encoders import resnet  # noqa: F401
from segjax.models.encoders import mobilenet  # noqa: F401
from segjax.models.encoders import xception  # noqa: F401
from segjax.models.decoders import unet as unet_decoder  # noqa: F401
