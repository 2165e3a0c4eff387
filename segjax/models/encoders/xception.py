"""Aligned Xception-65, the DeepLabv3+ backbone (Chen et al. 2018, arXiv:1802.02611, sec. 3.2).

Follows the definition of TF models `research/deeplab/core/xception.py`
(`xception_65`), which modifies Xception (Chollet 2017) as the paper says:
a deeper middle flow (16 units), every max pooling replaced by a strided
depthwise-separable conv, and batch norm after every depthwise and pointwise
conv (epsilon 1e-3, DeepLab's setting).

- entry flow: 3x3 conv 32 (stride 2), 3x3 conv 64; units of three separable
  convs with depths 128, 256, 728 (the third one strided), each with a
  1x1 conv + BN projection shortcut;
- middle flow: 16 units of three 728 separable convs, identity shortcut;
- exit flow: a unit (728, 1024, 1024; strided; projection shortcut), then a
  unit (1536, 1536, 2048) without shortcut whose separable convs apply ReLU
  after depthwise and pointwise BN; every other separable conv is
  ReLU -> depthwise -> BN -> pointwise -> BN ("original design").

`output_stride` 16 / 8: units past that stride run with stride 1 and the
dilation multiplied, the unit whose stride is removed keeping the previous
rate (DeepLab's `stack_blocks_dense`). `multi_grid` multiplies the rates of the
last unit's three separable convs (DeepLab's `unit_rate_list`).

Module names follow timm's `xception65` (a port of the DeepLab weights), so
`segjax.convert.xception` converts its weights one to one: `stem_{0,1}`,
`blocks_{i}/conv{1,2,3}/{depthwise,pointwise}`, `blocks_{i}/shortcut`.

Features, keyed by nominal stride, are the last map at each stride: the
second separable conv's output (pointwise BN, before the next unit's ReLU) of
the strided units 0, 1, 2 and 19 for strides 2, 4, 8, 16 (at stride 4 this is
DeepLabv3+'s decoder input,
`entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise`),
and the exit flow's output for 32.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.encoders import atrous_schedule, check_output_stride
from segjax.models.registry import register

NORM_EPSILON = 1e-3


class UnitSpec(NamedTuple):
    depths: tuple[int, int, int]
    stride: int
    skip: str             # 'conv' (1x1 projection), 'sum' (identity) or 'none'
    act_in_separable: bool = False


XCEPTION_65 = (
    UnitSpec((128, 128, 128), 2, "conv"),
    UnitSpec((256, 256, 256), 2, "conv"),
    UnitSpec((728, 728, 728), 2, "conv"),
    *(UnitSpec((728, 728, 728), 1, "sum"),) * 16,
    UnitSpec((728, 1024, 1024), 2, "conv"),
    UnitSpec((1536, 1536, 2048), 1, "none", act_in_separable=True),
)


class XceptionUnit(nn.Module):
    """Three separable convs (the third strided) plus a shortcut."""

    spec: UnitSpec
    strides: int = 1
    rates: Sequence[int] = (1, 1, 1)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """Returns (output, tap): tap is the second separable conv's output."""
        spec, y, tap = self.spec, x, x
        act = "relu" if spec.act_in_separable else None
        for index, (depth, rate) in enumerate(zip(spec.depths, self.rates)):
            if not spec.act_in_separable:
                y = jax.nn.relu(y)
            y = layers.SeparableConvNormAct(
                depth, 3, self.strides if index == 2 else 1, padding=rate, dilation=rate,
                act=act, depthwise_act=spec.act_in_separable, norm_epsilon=NORM_EPSILON,
                dtype=self.dtype, name=f"conv{index + 1}")(y, train=train)
            if index == 1:
                tap = y
        if spec.skip == "conv":
            y = y + layers.ConvNormAct(spec.depths[-1], 1, self.strides, padding=0, act=None,
                                       norm_epsilon=NORM_EPSILON, dtype=self.dtype,
                                       name="shortcut")(x, train=train)
        elif spec.skip == "sum":
            y = y + x
        return y, tap


class Xception(nn.Module):
    """Aligned Xception (DeepLab), stride-keyed features."""

    units: Sequence[UnitSpec] = XCEPTION_65
    output_stride: int = 32
    multi_grid: Sequence[int] = (1, 1, 1)
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        check_output_stride("Xception", self.output_stride)
        if len(self.multi_grid) != 3:
            raise ValueError(f"Xception: multi_grid needs 3 rates (one per separable conv of "
                             f"the last unit), got {tuple(self.multi_grid)}")
        for index, (width, strides) in enumerate(((32, 2), (64, 1))):
            x = layers.ConvNormAct(width, 3, strides, padding=1, norm_epsilon=NORM_EPSILON,
                                   dtype=self.dtype, name=f"stem_{index}")(x, train=train)
        features, stride = {}, 2
        schedule = atrous_schedule([unit.stride for unit in self.units], self.output_stride,
                                   start_stride=2)
        for index, (spec, unit) in enumerate(zip(self.units, schedule)):
            grid = self.multi_grid if index == len(self.units) - 1 else (1, 1, 1)
            rates = tuple(unit.dilation_before * g for g in grid)
            x, tap = XceptionUnit(spec, unit.stride, rates, dtype=self.dtype,
                                  name=f"blocks_{index}")(x, train=train)
            if spec.stride > 1:
                features[stride] = tap
                stride *= spec.stride
        features[stride] = x
        return features


@register("encoder", "xception65",
          paper="Chen et al. 2018, DeepLabv3+ (Aligned Xception-65), arXiv:1802.02611")
def xception65(output_stride: int = 32, multi_grid: Sequence[int] = (1, 1, 1),
               dtype: Any = None) -> Xception:
    return Xception(XCEPTION_65, output_stride, tuple(multi_grid), dtype)
