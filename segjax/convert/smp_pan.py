"""Mapping of segmentation_models_pytorch's `PAN` onto segjax's PAN models ("pan_resnet34").

smp names: `encoder.*` (a torchvision ResNet or MobileNetV2, see
`segjax.convert.smp_encoders`); `decoder.fpa.{branch1.1, mid.0, down1.1, down2.1,
down3.1, down3.2, conv1, conv2}` and `decoder.gau{k}.{conv1.1, conv2}`, each a
`ConvBnRelu` with `.conv` and `.bn`; `segmentation_head.0` (the 3x3
classifier). segjax names (`segjax.models.decoders.pan`):
`decoder/fpa/{pool_branch, mid, down1, down2, down3_1, down3_2, conv1, conv2}`,
`decoder/gau{k}/{pool_conv, conv}`, each a ConvNormAct (`conv`, `norm/bn`);
`head/classifier`. The GAUs are numbered from the shallowest feature up in
both, so the rules hold at any encoder depth.
"""

from segjax.convert.core import chain, register_mapping, rules
from segjax.convert.smp_encoders import smp_encoder

FPA_NAMES = {"branch1.1": "pool_branch", "mid.0": "mid", "down1.1": "down1", "down2.1": "down2",
             "down3.1": "down3_1", "down3.2": "down3_2", "conv1": "conv1", "conv2": "conv2"}
GAU_NAMES = {"conv1.1": "pool_conv", "conv2": "conv"}
LEAF = {"conv": "conv", "bn": "norm/bn"}


def _fpa(match) -> str:
    return f"decoder/fpa/{FPA_NAMES[match.group(1)]}/{LEAF[match.group(2)]}"


def _gau(match) -> str:
    return f"decoder/gau{match.group(1)}/{GAU_NAMES[match.group(2)]}/{LEAF[match.group(3)]}"


@register_mapping("smp_pan", models=("pan_resnet34",))
def smp_pan():
    """smp PAN with a ResNet or MobileNetV2 encoder."""
    return chain(
        smp_encoder(),
        rules(
            (r"decoder\.fpa\.(branch1\.1|mid\.0|down[12]\.1|down3\.[12]|conv[12])\.(conv|bn)",
             _fpa),
            (r"decoder\.gau(\d+)\.(conv1\.1|conv2)\.(conv|bn)", _gau),
            (r"segmentation_head\.0", "head/classifier"),
        ),
    )
