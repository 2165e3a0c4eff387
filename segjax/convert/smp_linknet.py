"""Mapping of segmentation_models_pytorch's `Linknet` onto "linknet_resnet34".

The encoder may be a ResNet or MobileNetV2 (`smp_model`); the same mapping converts
smp's Linknet on those encoders into the models of `segjax.models.decoders.linknet`'s
`smp_linknet(encoder)`.

smp: `decoder.blocks.{b}.block.{0: 1x1 conv + BN, 1: transposed conv + BN,
2: 1x1 conv + BN}.{0, 1}`; segjax: `decoder/block{b}/{reduce, up + up_norm, expand}`
(`segjax.models.decoders.linknet`).
"""

from segjax.convert.core import Target, register_mapping
from segjax.convert.smp_unet import smp_model

BLOCK = r"decoder\.blocks\.(\d+)\.block\."


@register_mapping("smp_linknet", models=("linknet_resnet34",))
def smp_linknet():
    """smp Linknet with a ResNet or MobileNetV2 encoder."""
    return smp_model(
        (BLOCK + r"0\.0", r"decoder/block\1/reduce/conv"),
        (BLOCK + r"0\.1", r"decoder/block\1/reduce/norm/bn"),
        (BLOCK + r"1\.0", Target(r"decoder/block\1/up", transposed=True)),
        (BLOCK + r"1\.1", r"decoder/block\1/up_norm/bn"),
        (BLOCK + r"2\.0", r"decoder/block\1/expand/conv"),
        (BLOCK + r"2\.1", r"decoder/block\1/expand/norm/bn"),
    )
