"""PAN: Pyramid Attention Network (Li, Xiong, An, Wang 2018, arXiv:1805.10180).

Two modules over an encoder's stride-keyed features:
- Feature Pyramid Attention (FPA) on the deepest feature: a U-shaped pyramid
  of 7x7, 5x5 and 3x3 convolutions (one channel each) over three 2x2 max
  poolings, upsampled and summed back up, multiplies a 1x1 projection of the
  feature (pixel-wise attention); a global-pooling branch is added.
- Global Attention Upsample (GAU) per shallower feature, deepest first: the
  high-level map, global-average-pooled and passed through a 1x1 conv + BN +
  sigmoid, weights a 3x3 conv + BN + ReLU of the low-level feature; the
  high-level map, bilinearly upsampled, is added.

The layout is segmentation_models_pytorch 0.6.0's `PAN` (smp's `PANDecoder`,
`FPABlock`, `GAUBlock`), so its weights convert one to one
(`segjax.convert.smp_pan`): every convolution has a bias before its batch norm
(smp's `ConvBnRelu`), the pooled GAU branch has no ReLU before its sigmoid,
every upsampling is bilinear with align_corners=True, and the decoder uses
the features at strides >= 4 (smp's `features[2:]`). The FPA pools its input
three times by 2 (floor), so its input must be at least 8x8.

"pan_resnet34" is `smp.PAN("resnet34")`: smp runs PAN's encoder at output
stride 16 by default, and smp's `make_dilated` replaces the last stage's
stride by dilation 2 in *every* convolution of that stage (the first block's
strided 3x3 included, unlike torchvision's `replace_stride_with_dilation`),
which segjax's ResNet reproduces with `multi_grid=(1, 1, 1)`. The features
keep their nominal stride keys, so the decoder's FPA reads `features[32]` at
1/16. The head is a 3x3 convolution at 1/4, upsampled x4 (align_corners=True).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from segjax.models import layers, registry
from segjax.models.segmenter import SegmentationHead, Segmenter
from segjax.ops import pooling
from segjax.ops.resize import resize

FPA_MIN_SIZE = 8  # three 2x2 max poolings must leave at least one pixel


def conv_bn(features: int, kernel_size: int, name: str, *, act: str | None = "relu",
            dtype: Any = None) -> layers.ConvNormAct:
    """smp's `ConvBnRelu`: a convolution *with* bias, BN, optional ReLU."""
    return layers.ConvNormAct(features, kernel_size, padding=kernel_size // 2, use_bias=True,
                              act=act, dtype=dtype, name=name)


def upsample(x: jax.Array, like: jax.Array) -> jax.Array:
    return resize(x, like.shape[1:-1], align_corners=True)


class FeaturePyramidAttention(nn.Module):
    """FPA: pyramid attention (7x7, 5x5, 3x3 over three poolings) x 1x1 branch + global branch."""

    features: int = 32
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if min(x.shape[1:-1]) < FPA_MIN_SIZE:
            raise ValueError(f"pan decoder: the deepest feature is {x.shape[1:-1]}, the feature "
                             f"pyramid attention pools it three times by 2 and needs at least "
                             f"{FPA_MIN_SIZE}x{FPA_MIN_SIZE} (a larger input or a smaller "
                             f"output_stride)")
        pooled = conv_bn(self.features, 1, "pool_branch", dtype=self.dtype)(
            pooling.global_avg_pool(x), train=train)
        middle = conv_bn(self.features, 1, "mid", dtype=self.dtype)(x, train=train)
        down1 = conv_bn(1, 7, "down1", dtype=self.dtype)(pooling.max_pool(x, 2), train=train)
        down2 = conv_bn(1, 5, "down2", dtype=self.dtype)(pooling.max_pool(down1, 2), train=train)
        down3 = conv_bn(1, 3, "down3_1", dtype=self.dtype)(pooling.max_pool(down2, 2), train=train)
        down3 = conv_bn(1, 3, "down3_2", dtype=self.dtype)(down3, train=train)
        y = conv_bn(1, 5, "conv2", dtype=self.dtype)(down2, train=train) + upsample(down3, down2)
        y = conv_bn(1, 7, "conv1", dtype=self.dtype)(down1, train=train) + upsample(y, down1)
        return upsample(y, x) * middle + upsample(pooled, x)


class GlobalAttentionUpsample(nn.Module):
    """GAU: the pooled high-level map weights the low-level feature's 3x3 conv."""

    features: int = 32
    dtype: Any = None

    @nn.compact
    def __call__(self, low, high, *, train: bool = False):
        weights = conv_bn(self.features, 1, "pool_conv", act=None, dtype=self.dtype)(
            pooling.global_avg_pool(high), train=train)
        low = conv_bn(self.features, 3, "conv", dtype=self.dtype)(low, train=train)
        return upsample(high, low) + low * jax.nn.sigmoid(weights)


@registry.register("decoder", "pan", paper="Li et al. 2018, PAN, arXiv:1805.10180 (smp layout)")
class PANDecoder(nn.Module):
    """FPA on the deepest feature, then one GAU per feature at stride >= `min_stride`.

    GAUs are named `gau1`, `gau2`, ... from the shallowest feature up, as smp names them.
    """

    features: int = 32
    min_stride: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        strides = sorted(s for s in features if s >= self.min_stride)
        if not strides:
            raise ValueError(f"pan decoder: no encoder feature at stride >= min_stride="
                             f"{self.min_stride}; encoder strides: {sorted(features)}")
        x = FeaturePyramidAttention(self.features, self.dtype, name="fpa")(
            features[strides[-1]], train=train)
        for index in reversed(range(len(strides) - 1)):
            x = GlobalAttentionUpsample(self.features, self.dtype, name=f"gau{index + 1}")(
                features[strides[index]], x, train=train)
        return x


@registry.register("model", "pan_resnet34", input_shape=(1, 512, 512, 3),
                   test_input_shape=(1, 128, 128, 3),
                   paper="Li et al. 2018, PAN, arXiv:1805.10180; smp PAN('resnet34')")
def pan_resnet34(num_classes: int = 1, output_stride: int = 16, decoder_channels: int = 32,
                 dtype: Any = None) -> Segmenter:
    """smp's `PAN("resnet34", classes=num_classes)` (smp's default: 1 class, output stride 16)."""
    if output_stride not in (16, 32):
        raise ValueError(f"pan_resnet34: output_stride must be 16 or 32 (as smp's PAN), "
                         f"got {output_stride!r}")
    options = {"multi_grid": (1, 1, 1)} if output_stride == 16 else {}
    encoder = registry.build_part("encoder", {"name": "resnet34", "output_stride": output_stride,
                                              "dtype": dtype, **options})
    return Segmenter(encoder, PANDecoder(decoder_channels, dtype=dtype),
                     SegmentationHead(num_classes, kernel_size=3, dtype=dtype),
                     align_corners=True)
