"""The encoders of segmentation_models_pytorch models, for the smp decoder mappings.

smp wraps torchvision's ResNets (`resnet18`..`resnet152`, `fc` removed) and
MobileNetV2 (`mobilenet_v2`, `classifier` removed) and keeps their names
under `encoder.`; their rules (`segjax.convert.resnet`,
`segjax.convert.mobilenet`) match disjoint names, so one chain serves an smp
model built on either, into `params['encoder']`.
"""

from segjax.convert.core import chain, prefixed
from segjax.convert.mobilenet import torchvision_mobilenet_v2
from segjax.convert.resnet import torchvision_resnet


def smp_encoder():
    """smp's `encoder.*` (a torchvision ResNet or MobileNetV2) -> segjax's `encoder/...`."""
    return prefixed("encoder.", "encoder", chain(torchvision_resnet(), torchvision_mobilenet_v2()))
