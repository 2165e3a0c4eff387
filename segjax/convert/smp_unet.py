"""Mapping of segmentation_models_pytorch's `Unet("resnet34")` onto segjax's "unet_resnet34".

smp names: `encoder.*` (a torchvision ResNet without `fc`),
`decoder.blocks.{i}.conv{1,2}.{0: conv, 1: batch norm}`, `segmentation_head.0`
(the 3x3 classifier). segjax names: `encoder/...` (see `segjax.convert.resnet`),
`decoder/block{i}/conv{1,2}/{conv, norm/bn}`, `head/classifier`.

`smp_model` is what every smp model shares: the encoder (smp's ResNet and
MobileNetV2 encoders are torchvision's models without their classifiers, so
their names are torchvision's) and the segmentation head; each smp decoder's
mapping adds its decoder's rules to it.
"""

from segjax.convert.core import chain, prefixed, register_mapping, rules
from segjax.convert.mobilenet import torchvision_mobilenet_v2
from segjax.convert.resnet import torchvision_resnet


def smp_model(*decoder_rules):
    """smp's `encoder.*` (a torchvision ResNet or MobileNetV2) and `segmentation_head.0`,
    plus the decoder's rules."""
    return chain(
        prefixed("encoder.", "encoder", chain(torchvision_resnet(), torchvision_mobilenet_v2())),
        rules(*decoder_rules, (r"segmentation_head\.0", "head/classifier")),
    )


@register_mapping("smp_unet", models=("unet_resnet34",))
def smp_unet():
    """smp Unet with a ResNet encoder, center block off (smp's default)."""
    return smp_model(
        (r"decoder\.blocks\.(\d+)\.conv(\d)\.0", r"decoder/block\1/conv\2/conv"),
        (r"decoder\.blocks\.(\d+)\.conv(\d)\.1", r"decoder/block\1/conv\2/norm/bn"),
    )
