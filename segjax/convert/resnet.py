"""Mappings of PyTorch ResNets onto `segjax.models.encoders.resnet.ResNet`.

- 'torchvision_resnet': torchvision's `resnet18`..`resnet152` (timm's plain
  `resnet*` share these names): `conv1`, `bn1`, `layer{s}.{b}.conv{k}` /
  `bn{k}`, `layer{s}.{b}.downsample.{0,1}`; `fc` is dropped.
- 'resnet_deep_stem': the v1c deep stem of timm (`conv1.{0,3,6}` convs,
  `conv1.{1,4}` + `bn1` norms) and mmsegmentation (`stem.{0,3,6}` convs,
  `stem.{1,4,7}` norms), with the same stages.
- 'hf_resnet': Hugging Face transformers' `ResNetModel` / `ResNetForImageClassification`
  (`embedder.embedder.*`, `encoder.stages.{s}.layers.{b}.layer.{k}.*`,
  `...shortcut.*`; an optional `resnet.` prefix; `classifier` dropped).
"""

from __future__ import annotations

from segjax.convert.core import IGNORE, chain, register_mapping, rules
from segjax.models.encoders.resnet import DEPTHS

PLAIN = tuple(f"resnet{depth}" for depth in DEPTHS)
DEEP_STEM = tuple(f"resnet{depth}_v1c" for depth in DEPTHS)

STAGES = (
    (r"layer(\d)\.(\d+)\.conv(\d)", r"layer\1_\2/conv\3"),
    (r"layer(\d)\.(\d+)\.bn(\d)", r"layer\1_\2/bn\3/bn"),
    (r"layer(\d)\.(\d+)\.downsample\.0", r"layer\1_\2/downsample_conv"),
    (r"layer(\d)\.(\d+)\.downsample\.1", r"layer\1_\2/downsample_bn/bn"),
    (r"fc", IGNORE),
)


@register_mapping("torchvision_resnet", encoders=PLAIN)
def torchvision_resnet():
    """torchvision / timm ResNet (7x7 stem)."""
    return rules(
        (r"conv1", "conv1"),
        (r"bn1", "bn1/bn"),
        *STAGES,
    )


def _deep_stem_layer(match) -> str:
    index = int(match.group(2))
    unit, position = divmod(index, 3)
    return f"stem_{unit}/" + ("conv" if position == 0 else "norm/bn")


@register_mapping("resnet_deep_stem", encoders=DEEP_STEM)
def resnet_deep_stem():
    """timm (`resnet50c`) / mmsegmentation (`ResNetV1c`) ResNet with the 3-conv stem."""
    return rules(
        (r"(conv1|stem)\.([0-7])", _deep_stem_layer),
        (r"bn1", "stem_2/norm/bn"),
        *STAGES,
    )


def _hf_stage_layer(match) -> str:
    stage, block, kind = int(match.group(1)) + 1, match.group(2), match.group(3)
    if kind.startswith("shortcut"):
        part = "conv" if kind.endswith("convolution") else "bn"
        return f"layer{stage}_{block}/downsample_{part}" + ("/bn" if part == "bn" else "")
    index, part = kind.split(".")[1], kind.split(".")[2]
    number = int(index) + 1
    return (f"layer{stage}_{block}/conv{number}" if part == "convolution"
            else f"layer{stage}_{block}/bn{number}/bn")


@register_mapping("hf_resnet", encoders=PLAIN)
def hf_resnet():
    """Hugging Face transformers ResNetModel (microsoft/resnet-*)."""
    body = rules(
        (r"embedder\.embedder\.convolution", "conv1"),
        (r"embedder\.embedder\.normalization", "bn1/bn"),
        (r"encoder\.stages\.(\d)\.layers\.(\d+)\."
         r"(shortcut\.(?:convolution|normalization)|layer\.\d\.(?:convolution|normalization))",
         _hf_stage_layer),
    )
    with_prefix = lambda module: body(module[len("resnet."):]) if module.startswith(
        "resnet.") else None
    return chain(body, with_prefix, rules((r"classifier(\..*)?", IGNORE)))
