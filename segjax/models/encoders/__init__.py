"""Encoders (backbones): images to a dict of features keyed by stride.

The contract every encoder honours:

    features = encoder(x, train=train)      # x: (N, H, W, C)
    features == {2: stem, 4: ..., 8: ..., 16: ..., 32: deepest}

Keys are *nominal* strides: the stride a stage would have without dilation,
so `features[16]` is always the third stage and `max(features)` the deepest
map, whatever `output_stride` is. With `output_stride` 16 or 8 the stages
past that stride replace their striding by dilation (atrous convolution), so
their maps keep the resolution H / output_stride; e.g. a ResNet at output
stride 8 returns features[16] and features[32] at H / 8.

`atrous_schedule` is the one place that turns nominal strides into
(stride, dilation) pairs; every encoder here uses it.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from segjax import registry

OUTPUT_STRIDES = (8, 16, 32)


class AtrousUnit(NamedTuple):
    """How one unit with a nominal stride runs at the requested output stride."""

    stride: int            # the stride it applies (1 once output_stride is reached)
    dilation_before: int   # the dilation in force when the unit starts
    dilation: int          # the dilation after the unit (for the units that follow)


def check_output_stride(owner: str, output_stride: int) -> None:
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"{owner}: output_stride must be one of {OUTPUT_STRIDES}, "
                         f"got {output_stride!r}")


def atrous_schedule(strides: Sequence[int], output_stride: int,
                    start_stride: int = 1) -> list[AtrousUnit]:
    """Strides and dilations of a chain of units with nominal `strides`.

    Once the running stride would exceed `output_stride`, a unit's stride is
    replaced by 1 and the dilation of everything after it is multiplied by
    that stride (torchvision's `replace_stride_with_dilation`, TF-slim's and
    DeepLab's `output_stride`). `dilation_before` is what torchvision's ResNet
    and DeepLab's Xception give the unit whose stride was replaced;
    `dilation` is what torchvision's MobileNetV3 (dilated=True) gives it.
    """
    units = []
    current, dilation = start_stride, 1
    for stride in strides:
        before = dilation
        if stride > 1 and current * stride > output_stride:
            dilation *= stride
            stride = 1
        else:
            current *= stride
        units.append(AtrousUnit(stride, before, dilation))
    return units


def accepts_option(name: str, option: str) -> bool:
    """Whether the registered encoder `name` takes the keyword `option` (e.g. 'max_stride')."""
    accepted = registry.accepted_keywords(registry.get("encoder", name).factory)
    return accepted is None or option in accepted
