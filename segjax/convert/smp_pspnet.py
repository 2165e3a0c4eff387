"""Mapping of segmentation_models_pytorch's `PSPNet` onto "pspnet_resnet34".

The encoder may be a ResNet or MobileNetV2 (`smp_model`); the same mapping converts
smp's PSPNet on those encoders into the models of `segjax.models.decoders.pspnet`'s
`smp_pspnet(encoder)`.

smp: `decoder.psp.blocks.{k}.pool.1.{0: conv, 1: BN}` (the 1x1 bin has no BN),
`decoder.conv.{0, 1}` (the fusion conv + BN); segjax
(`segjax.models.decoders.pspnet`): `decoder/bin{k}/{conv, norm/bn}`,
`decoder/fuse/{conv, norm/bn}`. smp's truncated encoder still holds layer3 and
layer4, and so does segjax's model: they convert like any ResNet weights.
"""

from segjax.convert.core import register_mapping
from segjax.convert.smp_unet import smp_model


@register_mapping("smp_pspnet", models=("pspnet_resnet34",))
def smp_pspnet():
    """smp PSPNet with a ResNet or MobileNetV2 encoder."""
    return smp_model(
        (r"decoder\.psp\.blocks\.(\d+)\.pool\.1\.0", r"decoder/bin\1/conv"),
        (r"decoder\.psp\.blocks\.(\d+)\.pool\.1\.1", r"decoder/bin\1/norm/bn"),
        (r"decoder\.conv\.0", "decoder/fuse/conv"),
        (r"decoder\.conv\.1", "decoder/fuse/norm/bn"),
    )
