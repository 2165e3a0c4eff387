"""Mappings of torchvision's MobileNetV2 / MobileNetV3-Large onto
`segjax.models.encoders.mobilenet.MobileNet`.

torchvision numbers the layers inside a block by position (`conv.{k}` in V2,
`block.{k}` in V3), and the positions depend on whether the block has an
expansion conv and a squeeze-excite; the tables below are derived from the
same block specifications the encoder is built from. `classifier.*` is dropped.
"""

from __future__ import annotations

from segjax.convert.core import IGNORE, chain, register_mapping, rules
from segjax.models.encoders.mobilenet import (make_divisible, mobilenet_v2_blocks,
                                              mobilenet_v3_blocks)

CONV_NORM = (("0", "conv"), ("1", "norm/bn"))  # torchvision Conv2dNormActivation


def _conv_norm(torch_prefix: str, flax_prefix: str) -> dict[str, str]:
    return {f"{torch_prefix}.{i}": f"{flax_prefix}/{part}" for i, part in CONV_NORM}


def _table(blocks, stem_features: int, v3: bool) -> dict[str, str]:
    table = _conv_norm("features.0", "features_0")
    in_features = stem_features
    for index, spec in enumerate(blocks, start=1):
        torch, flax = f"features.{index}.{'block' if v3 else 'conv'}", f"features_{index}"
        position = 0
        for layer in ("expand", "depthwise", "se", "project"):
            if layer == "expand" and spec.expanded == in_features:
                continue
            if layer == "se" and not spec.use_se:
                continue
            if layer == "se":
                table[f"{torch}.{position}.fc1"] = f"{flax}/se/fc1"
                table[f"{torch}.{position}.fc2"] = f"{flax}/se/fc2"
            elif layer == "project" and not v3:  # V2: a bare Conv2d then a BatchNorm2d
                table[f"{torch}.{position}"] = f"{flax}/project/conv"
                position += 1
                table[f"{torch}.{position}"] = f"{flax}/project/norm/bn"
            else:
                table.update(_conv_norm(f"{torch}.{position}", f"{flax}/{layer}"))
            position += 1
        in_features = spec.features
    last = len(blocks) + 1
    table.update(_conv_norm(f"features.{last}", f"features_{last}"))
    return table


def _lookup(table: dict[str, str]):
    return chain(table.get, rules((r"classifier(\..*)?", IGNORE)))


@register_mapping("torchvision_mobilenet_v2", encoders=("mobilenetv2",))
def torchvision_mobilenet_v2(width_multiplier: float = 1.0):
    """torchvision mobilenet_v2."""
    return _lookup(_table(mobilenet_v2_blocks(width_multiplier),
                          make_divisible(32 * width_multiplier), v3=False))


@register_mapping("torchvision_mobilenet_v3_large", encoders=("mobilenetv3_large",))
def torchvision_mobilenet_v3_large(width_multiplier: float = 1.0):
    """torchvision mobilenet_v3_large (also the DeepLabv3/LR-ASPP backbones' `backbone.*`)."""
    return _lookup(_table(mobilenet_v3_blocks(width_multiplier),
                          make_divisible(16 * width_multiplier), v3=True))
