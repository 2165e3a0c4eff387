"""ResNet-18/34/50/101/152 (He et al. 2015, arXiv:1512.03385), torchvision layout.

What is implemented, and why:
- torchvision's ResNet ("v1.5": the stride of a bottleneck is in its 3x3 conv,
  the projection shortcut is a strided 1x1 conv + BN), so torchvision and
  Hugging Face `ResNetModel` weights convert one to one
  (`segjax.convert.resnet`). Module names mirror torchvision's
  (`conv1`, `bn1`, `layer3_5/conv2`, `layer3_5/bn2`, `layer3_0/downsample_conv`,
  `layer3_0/downsample_bn`; the deep stem is `stem_0`..`stem_2`).
- `deep_stem=True`: the "v1c" stem (mmsegmentation's ResNetV1c, timm's
  `resnet50c`, PSPNet/DeepLab's ResNets): three 3x3 conv-BN-ReLU layers
  (32, 32, 64 channels, the first with stride 2) instead of one 7x7 conv.
- `output_stride` 16 or 8: the last one or two stages replace their stride by
  dilation with torchvision's `replace_stride_with_dilation` semantics (the
  first block of a dilated stage keeps the previous dilation in its strided
  conv), so converted torchvision weights give torchvision's outputs.
- `multi_grid` (DeepLabv3, arXiv:1706.05587, section 3.2): the blocks of the
  last stage use dilation `stage_dilation * multi_grid[i]`, the first block
  included, as in DeepLab's TF reference (at output stride 16 and multi-grid
  (1, 2, 4), block 4's rates are (2, 4, 8)).
- `zero_init_last_bn`: the last BN scale of each residual branch starts at
  zero (Goyal et al. 2017), so every block starts as the identity.
- `style="bit"`: the same network with BiT's convolutions and norms
  (Kolesnikov et al. 2019, arXiv:1912.11370, in its non-pre-activation
  form, timm's `resnetv2_50` with `preact=False` and transformers'
  `BitBackbone(layer_type="bottleneck")`): weight-standardised convolutions
  (epsilon 1e-8), group norm (32 groups) instead of batch norm, TensorFlow
  'SAME' padding (the extra row/column at the end) for the convolutions and
  the stem's max pooling. `stage_sizes` overrides the blocks per stage (the
  ViT-hybrid's ResNet-50 has three stages of 3, 4, 9; DPT-Hybrid uses it).
- `max_stride`: stages past this nominal stride are not run and their
  features not returned (smp's `encoder_depth`: PSPNet's default 3 is
  `max_stride=8`; a pruned UNet++ needs no deeper stage). With
  `build_unused=True` their weights are still created at init and only
  skipped when applied, as smp's truncated encoders keep `layer3`/`layer4`:
  the parameter count is smp's and its checkpoints convert strictly.

Features: {2: stem (after ReLU, before max pooling), 4: layer1, 8: layer2,
16: layer3, 32: layer4}, keyed by nominal stride (see `segjax.models.encoders`);
fewer `stage_sizes` give fewer features.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.encoders import atrous_schedule, check_output_stride
from segjax.models.registry import register
from segjax.ops import pooling

STAGE_WIDTHS = (64, 128, 256, 512)
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class Style(NamedTuple):
    """How a ResNet's convolutions and norms are built."""

    norm: str = "batch"
    same_padding: bool = False                   # TF 'SAME' instead of dilation * (k // 2)
    weight_standardization: float | None = None  # epsilon, or None for plain convolutions


STYLES = {"torchvision": Style(), "bit": Style("group", True, 1e-8)}


def get_style(name: str) -> Style:
    if name not in STYLES:
        raise ValueError(f"ResNet: style must be one of {sorted(STYLES)}, got {name!r}")
    return STYLES[name]


def conv_norm(x, features: int, kernel_size: int, *, train: bool, conv_name: str,
              norm_name: str, strides: int = 1, dilation: int = 1, zero_init: bool = False,
              dtype: Any = None, style: str = "torchvision"):
    """A bias-free conv (padding dilation * (k // 2), or BiT's 'SAME' and weight
    standardisation) and its norm, named `conv_name` / `norm_name`."""
    options = get_style(style)
    padding = "SAME" if options.same_padding else dilation * (kernel_size // 2)
    x = layers.Conv(features, kernel_size, strides, padding=padding, dilation=dilation,
                    use_bias=False, dtype=dtype,
                    weight_standardization=options.weight_standardization,
                    name=conv_name)(x)
    scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
    return layers.Norm(options.norm, dtype=dtype, scale_init=scale_init,
                       name=norm_name)(x, train=train)


def conv_bn(x, features: int, kernel_size: int, *, train: bool, name: str, **options):
    """torchvision's conv + BN, named `conv{name}` / `bn{name}` in the calling module."""
    return conv_norm(x, features, kernel_size, train=train, conv_name=f"conv{name}",
                     norm_name=f"bn{name}", **options)


def projection(x, features: int, strides: int, *, train: bool, dtype: Any = None,
               style: str = "torchvision"):
    """The shortcut: identity, or a 1x1 conv with the block's stride + BN
    (torchvision's `downsample.0` / `downsample.1`) when the shape changes."""
    if strides == 1 and x.shape[-1] == features:
        return x
    return conv_norm(x, features, 1, strides=strides, train=train, conv_name="downsample_conv",
                     norm_name="downsample_bn", dtype=dtype, style=style)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34). `dilation` applies to the first (strided)
    conv, `stage_dilation` to the second, as timm's dilated BasicBlock."""

    features: int
    strides: int = 1
    dilation: int = 1
    stage_dilation: int = 1
    zero_init_last_bn: bool = False
    dtype: Any = None
    style: str = "torchvision"
    expansion = 1

    @nn.compact
    def __call__(self, x, *, train: bool):
        common = {"train": train, "dtype": self.dtype, "style": self.style}
        residual = projection(x, self.features, self.strides, **common)
        y = conv_bn(x, self.features, 3, strides=self.strides, dilation=self.dilation,
                    name="1", **common)
        y = conv_bn(jax.nn.relu(y), self.features, 3, dilation=self.stage_dilation,
                    zero_init=self.zero_init_last_bn, name="2", **common)
        return jax.nn.relu(y + residual)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, dilated), 1x1 expand by 4 (ResNet-50/101/152, v1.5)."""

    features: int
    strides: int = 1
    dilation: int = 1
    stage_dilation: int = 1
    zero_init_last_bn: bool = False
    dtype: Any = None
    style: str = "torchvision"
    expansion = 4

    @nn.compact
    def __call__(self, x, *, train: bool):
        out = self.features * self.expansion
        common = {"train": train, "dtype": self.dtype, "style": self.style}
        residual = projection(x, out, self.strides, **common)
        y = conv_bn(x, self.features, 1, name="1", **common)
        y = conv_bn(jax.nn.relu(y), self.features, 3, strides=self.strides,
                    dilation=self.dilation, name="2", **common)
        y = conv_bn(jax.nn.relu(y), out, 1, zero_init=self.zero_init_last_bn, name="3",
                    **common)
        return jax.nn.relu(y + residual)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def block_dilations(num_blocks: int, dilation_before: int, dilation: int,
                    multi_grid: Sequence[int] | None) -> list[tuple[int, int]]:
    """(dilation, stage_dilation) of each block of a stage."""
    if multi_grid is None:
        return [(dilation_before, dilation)] + [(dilation, dilation)] * (num_blocks - 1)
    if len(multi_grid) != num_blocks:
        raise ValueError(f"ResNet: multi_grid {tuple(multi_grid)} needs one rate per block of "
                         f"the last stage ({num_blocks} blocks)")
    return [(dilation * rate, dilation * rate) for rate in multi_grid]


class ResNet(nn.Module):
    """A torchvision-layout ResNet returning stride-keyed features."""

    depth: int = 50
    output_stride: int = 32
    multi_grid: Sequence[int] | None = None
    deep_stem: bool = False
    zero_init_last_bn: bool = False
    max_stride: int = 32
    build_unused: bool = False
    dtype: Any = None
    style: str = "torchvision"
    stage_sizes: Sequence[int] | None = None
    widths: Sequence[int] | None = None      # stage widths (default STAGE_WIDTHS)
    stem_width: int = 64

    def stem(self, x, *, train: bool):
        if not self.deep_stem:
            x = conv_bn(x, self.stem_width, 7, strides=2, train=train, name="1", dtype=self.dtype,
                        style=self.style)
            return jax.nn.relu(x)
        if self.style != "torchvision":
            raise ValueError(f"ResNet: deep_stem has no {self.style!r} style (it is the "
                             "torchvision-style v1c stem)")
        half = max(1, self.stem_width // 2)
        for index, (width, strides) in enumerate(((half, 2), (half, 1), (self.stem_width, 1))):
            x = layers.ConvNormAct(width, 3, strides, padding=1, dtype=self.dtype,
                                   name=f"stem_{index}")(x, train=train)
        return x

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        if self.depth not in DEPTHS:
            raise ValueError(f"ResNet: depth must be one of {sorted(DEPTHS)}, got {self.depth!r}")
        check_output_stride("ResNet", self.output_stride)
        if self.max_stride not in (2, 4, 8, 16, 32):
            raise ValueError(f"ResNet: max_stride must be one of 2, 4, 8, 16, 32, got "
                             f"{self.max_stride!r}")
        kind, stage_sizes = DEPTHS[self.depth]
        stage_sizes = tuple(self.stage_sizes or stage_sizes)
        if not 1 <= len(stage_sizes) <= len(STAGE_WIDTHS):
            raise ValueError(f"ResNet: stage_sizes needs 1 to {len(STAGE_WIDTHS)} stages, got "
                             f"{stage_sizes}")
        widths = tuple(self.widths or STAGE_WIDTHS)
        if len(widths) < len(stage_sizes):
            raise ValueError(f"ResNet: widths {widths} needs one width per stage {stage_sizes}")
        block = BLOCKS[kind]
        x = self.stem(x, train=train)
        features = {2: x}
        x = pooling.max_pool(x, 3, 2, padding="SAME" if get_style(self.style).same_padding
                            else 1)
        schedule = atrous_schedule((1, 2, 2, 2), self.output_stride, start_stride=4)
        for stage, (num_blocks, width, unit) in enumerate(zip(stage_sizes, widths,
                                                              schedule)):
            stride = 4 * 2 ** stage
            if stride > self.max_stride and not (self.build_unused and self.is_initializing()):
                break
            last = stage == len(stage_sizes) - 1
            dilations = block_dilations(num_blocks, unit.dilation_before, unit.dilation,
                                        self.multi_grid if last else None)
            for index, (dilation, stage_dilation) in enumerate(dilations):
                x = block(width, unit.stride if index == 0 else 1, dilation, stage_dilation,
                          self.zero_init_last_bn, self.dtype, self.style,
                          name=f"layer{stage + 1}_{index}")(x, train=train)
            if stride <= self.max_stride:
                features[stride] = x
        return features


def _register(depth: int, deep_stem: bool) -> None:
    name = f"resnet{depth}" + ("_v1c" if deep_stem else "")
    register("encoder", name, paper="He et al. 2015, ResNet, arXiv:1512.03385",
             depth=depth, deep_stem=deep_stem)(ResNet)


for _depth in DEPTHS:
    _register(_depth, deep_stem=False)
    _register(_depth, deep_stem=True)
