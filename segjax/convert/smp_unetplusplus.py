"""Mapping of segmentation_models_pytorch's `UnetPlusPlus` onto "unetplusplus_resnet34".

The encoder may be a ResNet or MobileNetV2 (`smp_model`); the same mapping converts
smp's UnetPlusPlus on those encoders into the models of `segjax.models.decoders.unetplusplus`'s
`smp_unetplusplus(encoder)`.

smp names its nodes `decoder.blocks.x_{d}_{l}` with l the resolution counted
from the deepest skip (0) and d from the last node of that resolution (0)
back; `x_0_{depth}` is the block past the top row (no skip). In the paper's
notation that segjax uses (`segjax.models.decoders.unetplusplus`), x_{d}_{l}
is X^{i,j} with i = depth - 1 - l and j = l - d + 1, named `decoder/x{i}_{j}`,
and x_0_{depth} is `decoder/extra0`. `depth` is the number of decoder rows,
4 at smp's default encoder_depth=5. Each block has `conv{1,2}.{0: conv, 1: BN}`.
"""

from segjax.convert.core import register_mapping
from segjax.convert.smp_unet import smp_model

SMP_DEPTH = 4


def node_path(d: int, l: int, depth: int) -> str:
    """The segjax module of smp's node x_{d}_{l}."""
    if l == depth:
        return f"decoder/extra{d}"
    return f"decoder/x{depth - 1 - l}_{l - d + 1}"


@register_mapping("smp_unetplusplus", models=("unetplusplus_resnet34",))
def smp_unetplusplus(depth: int = SMP_DEPTH):
    """smp UnetPlusPlus with a ResNet or MobileNetV2 encoder (no deep supervision, as smp)."""
    def conv(match, part: str) -> str:
        d, l, index = int(match.group(1)), int(match.group(2)), match.group(3)
        return f"{node_path(d, l, depth)}/conv{index}/{part}"

    return smp_model(
        (r"decoder\.blocks\.x_(\d+)_(\d+)\.conv(\d)\.0", lambda m: conv(m, "conv")),
        (r"decoder\.blocks\.x_(\d+)_(\d+)\.conv(\d)\.1", lambda m: conv(m, "norm/bn")),
    )
