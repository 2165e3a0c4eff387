"""Axial-ResNet (Wang et al. 2020, Axial-DeepLab, arXiv:2003.07853).

A ResNet-50 whose bottleneck blocks replace their 3x3 convolution by a
height-axis then a width-axis position-sensitive axial attention
(`segjax.models.axial_attention`), in every stage. Block of base width f:

    1x1 conv -> 2f, BN, ReLU
    height-axis attention, width-axis attention (query depth f, value depth 2f, 8 heads;
        each normalises its own output)
    stride 2: 2x2 average pooling of the width attention's output (ceil mode, so
        257 -> 129)
    ReLU (after the pooling: ReLU(pool(y)), the official order, whose pooling is
        part of its width attention layer and whose ReLU is the block's)
    1x1 conv -> 4f, BN (zero-initialised: every block starts as its shortcut)
    + shortcut (identity, or 1x1 conv with the block's stride + BN), ReLU

Stage base widths are (64, 128, 256, 512) times the width multiplier of the
variant: S 0.5, M 0.75, L 1.0, XL 2.0 (the paper's Axial-ResNet-S/M/L and
Axial-DeepLab-XL's backbone); depths (3, 4, 6, 3) as ResNet-50, (1, 2, 4, 1)
for the official code's Axial-ResNet-26-S.

Layout sources and choices:
- the block, the 8 heads, the value depth twice the query depth, the
  expansion of 2 and the average-pooling stride follow the official PyTorch
  code (csrhddlam/axial-deeplab, `AxialBlock`); deeplab2's
  `AxialBlock`/`AxialAttention2D` has the same widths (filters [2f, f, 4f]),
  but subsamples each axis after its attention instead of pooling.
- stem "inception" (Axial-DeepLab, following Panoptic-DeepLab and
  deeplab2's `InceptionSTEM`): three 3x3 conv-BN-ReLU of 64, 64, 128
  channels (first stride 2), then 3x3/2 max pooling as TF DeepLab's
  resnet_v1_beta (deeplab2 drops the pooling and strides the first block
  instead). The stem keeps its widths in every variant, as deeplab2's
  `stem_width_multiplier` = 1 for Axial-DeepLab-S/L.
  stem "conv7" is the official ImageNet code's: a 7x7/2 conv of
  int(64 x width) channels, BN, ReLU, 3x3/2 max pooling.
- `output_stride` 16 (Axial-DeepLab) removes the last stage's stride; the
  attention is global, so nothing replaces it (no atrous rates). 8 also
  removes stage 3's; the default 32 keeps every stride (ImageNet).
- relative positional tables: a global attention's table covers the
  block's input length at `max_input_size` (the paper's crop; 224 -> 56, 28,
  14, 7 as the official code's `kernel_size`), or, when None, the length
  seen at initialisation; `span` (the paper's 65) makes every layer local.

Features: {2: stem, 4, 8, 16, 32: stages 1-4}, keyed by nominal stride.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.encoders import atrous_schedule, check_output_stride
from segjax.models.encoders.resnet import conv_bn, projection
from segjax.models.registry import register
from segjax.models.axial_attention import AxialAttention
from segjax.ops import pooling

STAGE_WIDTHS = (64, 128, 256, 512)
DEPTHS = {26: (1, 2, 4, 1), 50: (3, 4, 6, 3)}
WIDTH_MULTIPLIERS = {"s": 0.5, "m": 0.75, "l": 1.0, "xl": 2.0}
STEMS = ("inception", "conv7")
INCEPTION_STEM = ((64, 2), (64, 1), (128, 1))


def table_length(max_input_size: int | None, stride: int) -> int | None:
    """Axis length at `stride` of a `max_input_size` input (ceil, as 'SAME' strides give)."""
    return None if max_input_size is None else -(-int(max_input_size) // stride)


class AxialBlock(nn.Module):
    """Bottleneck block with height- then width-axis attention in place of the 3x3 conv."""

    features: int
    strides: int = 1
    num_heads: int = 8
    span: int | None = None
    max_length: int | None = None
    zero_init_last_bn: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        width, out = 2 * self.features, 4 * self.features
        residual = projection(x, out, self.strides, train=train, dtype=self.dtype)
        y = layers.ConvNormAct(width, 1, padding=0, dtype=self.dtype, name="conv1")(
            x, train=train)
        for axis, name in ((1, "height_attention"), (2, "width_attention")):
            y = AxialAttention(width, axis, self.num_heads, self.span, self.max_length,
                               dtype=self.dtype, name=name)(y, train=train)
        if self.strides > 1:  # inside the official width attention, before the block's ReLU
            y = pooling.avg_pool(y, self.strides, self.strides, padding="SAME")
        y = jax.nn.relu(y)
        y = conv_bn(y, out, 1, train=train, name="3", zero_init=self.zero_init_last_bn,
                    dtype=self.dtype)
        return jax.nn.relu(y + residual)


class AxialResNet(nn.Module):
    """Axial-ResNet returning stride-keyed features (see the module docstring)."""

    depths: Sequence[int] = DEPTHS[50]
    width_multiplier: float = 1.0
    stem: str = "inception"
    output_stride: int = 32
    num_heads: int = 8
    span: int | None = None
    max_input_size: int | None = None
    zero_init_last_bn: bool = True
    dtype: Any = None

    def stem_layers(self, x, *, train: bool):
        if self.stem == "conv7":
            return layers.ConvNormAct(int(64 * self.width_multiplier), 7, 2, padding=3,
                                      dtype=self.dtype, name="stem")(x, train=train)
        for index, (width, strides) in enumerate(INCEPTION_STEM):
            x = layers.ConvNormAct(width, 3, strides, padding=1, dtype=self.dtype,
                                   name=f"stem_{index}")(x, train=train)
        return x

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        check_output_stride("AxialResNet", self.output_stride)
        if self.stem not in STEMS:
            raise ValueError(f"AxialResNet: stem must be one of {STEMS}, got {self.stem!r}")
        if len(self.depths) != len(STAGE_WIDTHS):
            raise ValueError(f"AxialResNet: depths needs {len(STAGE_WIDTHS)} stage depths, got "
                             f"{tuple(self.depths)}")
        x = self.stem_layers(x, train=train)
        features = {2: x}
        x = pooling.max_pool(x, 3, 2, padding=1)
        stride = 4
        schedule = atrous_schedule((1, 2, 2, 2), self.output_stride, start_stride=4)
        for stage, (depth, width, unit) in enumerate(zip(self.depths, STAGE_WIDTHS, schedule)):
            for index in range(depth):
                strides = unit.stride if index == 0 else 1
                x = AxialBlock(int(width * self.width_multiplier), strides, self.num_heads,
                               self.span, table_length(self.max_input_size, stride),
                               self.zero_init_last_bn, self.dtype,
                               name=f"layer{stage + 1}_{index}")(x, train=train)
                stride *= strides
            features[4 * 2 ** stage] = x
        return features


_PAPER = "Wang et al. 2020, Axial-DeepLab, arXiv:2003.07853"

for _variant, _multiplier in WIDTH_MULTIPLIERS.items():
    register("encoder", f"axial_resnet_{_variant}", paper=f"{_PAPER} (Axial-ResNet-"
             f"{_variant.upper()})", width_multiplier=_multiplier)(AxialResNet)
