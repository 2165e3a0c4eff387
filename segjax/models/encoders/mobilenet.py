"""MobileNetV2 (Sandler et al. 2018, arXiv:1801.04381) and MobileNetV3-Large
(Howard et al. 2019, arXiv:1905.02244), torchvision layouts.

Both are a stem conv, a chain of inverted residual blocks (1x1 expansion,
depthwise kxk, optional squeeze-excite, linear 1x1 projection, identity
shortcut when shapes allow) and a final 1x1 conv. Module names mirror
torchvision's `features.{i}` indices (`features_{i}`), and inside a block
`expand`, `depthwise`, `se` (`fc1`, `fc2`), `project`, so torchvision weights
convert one to one (`segjax.convert.mobilenet`). Channel rounding is
torchvision's `_make_divisible` (multiples of 8), so `width_multiplier`
gives torchvision's widths too.

MobileNetV3-Large: hard-swish in the later blocks, squeeze-excite with
ReLU and hard-sigmoid and a squeeze width of make_divisible(expanded / 4),
batch norm epsilon 1e-3 and PyTorch momentum 0.01, as torchvision.

`output_stride` 16 or 8 replaces the stride of the later stages by
dilation. MobileNetV3 follows torchvision's `dilated=True` (the block whose
stride is removed already uses the new dilation; the DeepLabv3-MobileNetV3
backbone is output_stride=16); MobileNetV2 follows DeepLab's TF MobileNetV2
(that block keeps the previous rate), as the DeepLabv3+ MobileNetV2 model.

Features: the last block output at each nominal stride, {2: features_1,
4: features_3, 8: features_6, 16: features_13 (V2) / features_12 (V3),
32: the final 1x1 conv (1280 / 960 channels), or the last block (320 / 160)
with `include_last_conv=False` (DeepLab's MobileNetV2 backbone)}.
`tap_first_block=True` keys strides 2..16 by their *first* (strided) block
instead, {2: features_0, 4: features_2, 8: features_4, 16: features_7}, as
torchvision's segmentation models tap MobileNetV3 (`stage_indices`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.encoders import atrous_schedule, check_output_stride
from segjax.models.registry import register
from segjax.ops import activations, pooling


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's `_make_divisible`: nearest multiple of `divisor`, never 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class BlockSpec(NamedTuple):
    kernel_size: int
    expanded: int       # hidden width (V3: absolute; V2: computed from the expansion ratio)
    features: int
    use_se: bool
    act: str
    stride: int


# torchvision `_mobilenet_v3_conf("mobilenet_v3_large")` (Table 1 of the paper).
MOBILENET_V3_LARGE = (
    BlockSpec(3, 16, 16, False, "relu", 1),
    BlockSpec(3, 64, 24, False, "relu", 2),
    BlockSpec(3, 72, 24, False, "relu", 1),
    BlockSpec(5, 72, 40, True, "relu", 2),
    BlockSpec(5, 120, 40, True, "relu", 1),
    BlockSpec(5, 120, 40, True, "relu", 1),
    BlockSpec(3, 240, 80, False, "hard_swish", 2),
    BlockSpec(3, 200, 80, False, "hard_swish", 1),
    BlockSpec(3, 184, 80, False, "hard_swish", 1),
    BlockSpec(3, 184, 80, False, "hard_swish", 1),
    BlockSpec(3, 480, 112, True, "hard_swish", 1),
    BlockSpec(3, 672, 112, True, "hard_swish", 1),
    BlockSpec(5, 672, 160, True, "hard_swish", 2),
    BlockSpec(5, 960, 160, True, "hard_swish", 1),
    BlockSpec(5, 960, 160, True, "hard_swish", 1),
)
# MobileNetV2 (t expansion, c channels, n repeats, s stride of the first), Table 2 of the paper.
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2_blocks(width_multiplier: float = 1.0) -> tuple[BlockSpec, ...]:
    """MobileNetV2's blocks as BlockSpecs (3x3 depthwise, ReLU6, no SE)."""
    blocks, in_features = [], make_divisible(32 * width_multiplier)
    for expansion, channels, repeats, stride in MOBILENET_V2_SETTINGS:
        out = make_divisible(channels * width_multiplier)
        for index in range(repeats):
            blocks.append(BlockSpec(3, int(round(in_features * expansion)), out, False, "relu6",
                                    stride if index == 0 else 1))
            in_features = out
    return tuple(blocks)


def mobilenet_v3_blocks(width_multiplier: float = 1.0) -> tuple[BlockSpec, ...]:
    scale = lambda c: make_divisible(c * width_multiplier)
    return tuple(spec._replace(expanded=scale(spec.expanded), features=scale(spec.features))
                 for spec in MOBILENET_V3_LARGE)


class SqueezeExcite(nn.Module):
    """torchvision's SqueezeExcitation: pool, 1x1 (ReLU), 1x1, hard-sigmoid gate."""

    squeeze: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        scale = pooling.global_avg_pool(x)
        scale = jax.nn.relu(layers.Conv(self.squeeze, 1, padding=0, dtype=self.dtype,
                                        name="fc1")(scale))
        scale = layers.Conv(x.shape[-1], 1, padding=0, dtype=self.dtype, name="fc2")(scale)
        return x * activations.hard_sigmoid(scale)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (kxk, strided / dilated) -> [SE] -> project (1x1, linear)."""

    spec: BlockSpec
    strides: int = 1
    dilation: int = 1
    norm_epsilon: float = 1e-5
    norm_momentum: float = 0.9
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        spec = self.spec
        conv = lambda *args, **kwargs: layers.ConvNormAct(
            *args, norm_epsilon=self.norm_epsilon, norm_momentum=self.norm_momentum,
            dtype=self.dtype, **kwargs)
        y = x
        if spec.expanded != x.shape[-1]:
            y = conv(spec.expanded, 1, padding=0, act=spec.act, name="expand")(y, train=train)
        y = conv(spec.expanded, spec.kernel_size, self.strides,
                 padding=(spec.kernel_size - 1) // 2 * self.dilation, dilation=self.dilation,
                 groups=spec.expanded, act=spec.act, name="depthwise")(y, train=train)
        if spec.use_se:
            y = SqueezeExcite(make_divisible(spec.expanded // 4), dtype=self.dtype,
                              name="se")(y)
        y = conv(spec.features, 1, padding=0, act=None, name="project")(y, train=train)
        if self.strides == 1 and x.shape[-1] == spec.features:
            y = y + x
        return y


class MobileNet(nn.Module):
    """Stem conv, inverted residual blocks, last 1x1 conv; stride-keyed features."""

    blocks: Sequence[BlockSpec]
    stem_features: int
    stem_act: str
    last_features: int
    last_act: str
    output_stride: int = 32
    include_last_conv: bool = True
    strided_block_uses_new_dilation: bool = False  # torchvision V3 True; DeepLab V2 False
    # Key each stride by its first (strided) block instead of its last, as torchvision's
    # segmentation models tap MobileNetV3 (`stage_indices`: the aux head reads features.4).
    tap_first_block: bool = False
    norm_epsilon: float = 1e-5
    norm_momentum: float = 0.9
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        check_output_stride(type(self).__name__, self.output_stride)
        norm = dict(norm_epsilon=self.norm_epsilon, norm_momentum=self.norm_momentum,
                    dtype=self.dtype)
        x = layers.ConvNormAct(self.stem_features, 3, 2, padding=1, act=self.stem_act,
                               name="features_0", **norm)(x, train=train)
        features, stride = {2: x}, 2
        schedule = atrous_schedule([spec.stride for spec in self.blocks], self.output_stride,
                                   start_stride=2)
        for index, (spec, unit) in enumerate(zip(self.blocks, schedule), start=1):
            dilation = (unit.dilation if self.strided_block_uses_new_dilation
                        else unit.dilation_before)
            x = InvertedResidual(spec, unit.stride, dilation, name=f"features_{index}",
                                 **norm)(x, train=train)
            stride *= spec.stride
            if spec.stride > 1 or not self.tap_first_block:
                features[stride] = x
        if self.include_last_conv:
            x = layers.ConvNormAct(self.last_features, 1, padding=0, act=self.last_act,
                                   name=f"features_{len(self.blocks) + 1}", **norm)(
                                       x, train=train)
            features[stride] = x
        return features


@register("encoder", "mobilenetv2", paper="Sandler et al. 2018, MobileNetV2, arXiv:1801.04381")
def mobilenet_v2(output_stride: int = 32, width_multiplier: float = 1.0,
                 include_last_conv: bool = True, dtype: Any = None) -> MobileNet:
    """torchvision's `mobilenet_v2` features (ReLU6, 32-channel stem, 1280-channel last conv)."""
    return MobileNet(mobilenet_v2_blocks(width_multiplier),
                     stem_features=make_divisible(32 * width_multiplier), stem_act="relu6",
                     last_features=make_divisible(1280 * max(1.0, width_multiplier)),
                     last_act="relu6", output_stride=output_stride,
                     include_last_conv=include_last_conv,
                     strided_block_uses_new_dilation=False, dtype=dtype)


@register("encoder", "mobilenetv3_large",
          paper="Howard et al. 2019, MobileNetV3, arXiv:1905.02244")
def mobilenet_v3_large(output_stride: int = 32, width_multiplier: float = 1.0,
                       include_last_conv: bool = True, tap_first_block: bool = False,
                       dtype: Any = None) -> MobileNet:
    """torchvision's `mobilenet_v3_large` features (16-channel stem, 960-channel last conv)."""
    blocks = mobilenet_v3_blocks(width_multiplier)
    return MobileNet(blocks, stem_features=make_divisible(16 * width_multiplier),
                     stem_act="hard_swish", last_features=6 * blocks[-1].features,
                     last_act="hard_swish", output_stride=output_stride,
                     include_last_conv=include_last_conv,
                     strided_block_uses_new_dilation=True, norm_epsilon=1e-3,
                     norm_momentum=0.99, tap_first_block=tap_first_block, dtype=dtype)
