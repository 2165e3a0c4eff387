"""Mapping of segmentation_models_pytorch's `FPN` onto "fpn_resnet34".

The encoder may be a ResNet or MobileNetV2 (`smp_model`); the same mapping converts
smp's FPN on those encoders into the models of `segjax.models.decoders.fpn`'s
`smp_fpn(encoder)`.

smp: `decoder.p5` (the 1x1 conv on the deepest feature), `decoder.p{4,3,2}.skip_conv`
(laterals), `decoder.seg_blocks.{k}.block.{m}.block.{0: conv, 1: GroupNorm}` with
k = 0 for P5 ... 3 for P2; segjax (`segjax.models.decoders.fpn`): levels deepest
first, `decoder/lateral{k}`, `decoder/seg{k}_{m}/{conv, norm/gn}`.
"""

from segjax.convert.core import register_mapping
from segjax.convert.smp_unet import smp_model

SEG = r"decoder\.seg_blocks\.(\d)\.block\.(\d)\.block\."


@register_mapping("smp_fpn", models=("fpn_resnet34",))
def smp_fpn():
    """smp FPN with a ResNet or MobileNetV2 encoder (merge policy 'add' or 'cat')."""
    return smp_model(
        (r"decoder\.p5", "decoder/lateral0"),
        (r"decoder\.p([2-4])\.skip_conv", lambda m: f"decoder/lateral{5 - int(m.group(1))}"),
        (SEG + r"0", r"decoder/seg\1_\2/conv"),
        (SEG + r"1", r"decoder/seg\1_\2/norm/gn"),
    )
