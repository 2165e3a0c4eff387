"""Mapping of segmentation_models_pytorch's `MAnet` onto segjax's MAnet models ("manet_resnet34").

smp names: `encoder.*` (a torchvision ResNet or MobileNetV2, see
`segjax.convert.smp_encoders`); `decoder.center.{top,center,bottom,out}_conv`
(the PAB); `decoder.blocks.{i}.hl_conv.{0,1}.{0: conv, 1: BN}`,
`decoder.blocks.{i}.SE_{hl,ll}.{1: reduce, 3: expand}`,
`decoder.blocks.{i}.conv{1,2}.{0: conv, 1: BN}`; `segmentation_head.0`.
segjax names (`segjax.models.decoders.manet`): `decoder/pab/{top,center,bottom,out}`,
`decoder/block{i}/{hl_conv0, hl_conv1, conv1, conv2}/{conv, norm/bn}`,
`decoder/block{i}/se_{high,skip}/{reduce,expand}`, `head/classifier`.
"""

from segjax.convert.core import chain, register_mapping, rules
from segjax.convert.smp_encoders import smp_encoder

SE_BRANCH = {"hl": "se_high", "ll": "se_skip"}
SE_LAYER = {"1": "reduce", "3": "expand"}


def _squeeze_excite(match) -> str:
    return (f"decoder/block{match.group(1)}/{SE_BRANCH[match.group(2)]}/"
            f"{SE_LAYER[match.group(3)]}")


@register_mapping("smp_manet", models=("manet_resnet34",))
def smp_manet():
    """smp MAnet with a ResNet or MobileNetV2 encoder."""
    return chain(
        smp_encoder(),
        rules(
            (r"decoder\.center\.(top|center|bottom|out)_conv", r"decoder/pab/\1"),
            (r"decoder\.blocks\.(\d+)\.hl_conv\.([01])\.0", r"decoder/block\1/hl_conv\2/conv"),
            (r"decoder\.blocks\.(\d+)\.hl_conv\.([01])\.1",
             r"decoder/block\1/hl_conv\2/norm/bn"),
            (r"decoder\.blocks\.(\d+)\.SE_(hl|ll)\.([13])", _squeeze_excite),
            (r"decoder\.blocks\.(\d+)\.conv([12])\.0", r"decoder/block\1/conv\2/conv"),
            (r"decoder\.blocks\.(\d+)\.conv([12])\.1", r"decoder/block\1/conv\2/norm/bn"),
            (r"segmentation_head\.0", "head/classifier"),
        ),
    )
