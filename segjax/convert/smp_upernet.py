"""Mapping of segmentation_models_pytorch's `UPerNet` onto segjax's UPerNet models
("upernet_resnet34").

smp names: `encoder.*` (a torchvision ResNet or MobileNetV2, see
`segjax.convert.smp_encoders`); `decoder.feature_norms.{i}` (LayerNorms, finest
first); `decoder.psp.blocks.{j}.1.{0: conv, 1: BN}`, `decoder.psp.out_conv`;
`decoder.fpn_lateral_blocks.{i}.conv_norm_relu`, `decoder.fpn_conv_blocks.{i}`
(deepest first), `decoder.fusion_block`, each a `Conv2dReLU` (`.0` conv, `.1`
BN); `segmentation_head.0` (the 1x1 classifier). segjax names
(`segjax.models.decoders.upernet`): `decoder/norm{i}`,
`decoder/ppm/{stage{j}, bottleneck}`, `decoder/lateral{i}`, `decoder/fpn_conv{i}`,
`decoder/fusion` (each `conv`, `norm/bn`), `head/classifier`.
"""

from segjax.convert.core import chain, register_mapping, rules
from segjax.convert.smp_encoders import smp_encoder

MODULES = (
    (r"decoder\.psp\.blocks\.(\d+)\.1", r"decoder/ppm/stage\1"),
    (r"decoder\.psp\.out_conv", "decoder/ppm/bottleneck"),
    (r"decoder\.fpn_lateral_blocks\.(\d+)\.conv_norm_relu", r"decoder/lateral\1"),
    (r"decoder\.fpn_conv_blocks\.(\d+)", r"decoder/fpn_conv\1"),
    (r"decoder\.fusion_block", "decoder/fusion"),
)


def _conv_norm_rules():
    """Each smp `Conv2dReLU` (`.0` conv, `.1` BN) -> a ConvNormAct (`conv`, `norm/bn`)."""
    pairs = []
    for torch_module, flax_module in MODULES:
        pairs.append((torch_module + r"\.0", flax_module + "/conv"))
        pairs.append((torch_module + r"\.1", flax_module + "/norm/bn"))
    return pairs


@register_mapping("smp_upernet", models=("upernet_resnet34",))
def smp_upernet():
    """smp UPerNet with a ResNet or MobileNetV2 encoder."""
    return chain(
        smp_encoder(),
        rules(
            (r"decoder\.feature_norms\.(\d+)", r"decoder/norm\1"),
            *_conv_norm_rules(),
            (r"segmentation_head\.0", "head/classifier"),
        ),
    )
