"""Panoptic-DeepLab's dual decoders and heads (Cheng et al. 2020, arXiv:1911.10194).

Two decoders read the same encoder features, one for semantic segmentation
and one for (class-agnostic) instances. Each is DeepLabv3+-like with two
fusion stages:

    ASPP (256 channels) on the deepest feature, or only its 1x1 projection
        (`rates=()`, Axial-DeepLab, which drops ASPP: its attention is global)
    for the low-level features at strides 8 and 4:
        1x1 conv + BN + ReLU of the low-level feature (semantic 64 / 32 channels,
            instance 32 / 16), bilinear upsampling (align corners) of the decoder
            feature to it, concatenation,
        one 5x5 depthwise-separable conv (semantic 256 channels, instance 128)

The semantic head (the registered head "panoptic_deeplab") and the instance
heads are a 5x5 depthwise-separable conv (semantic 256, centre and offset 32
channels) and a 1x1 conv with bias: to the classes, to one centre-heatmap
channel, to two offset channels (dy, dx). Depthwise-separable convolutions
are deeplab2's: depthwise, BN, ReLU, pointwise, BN, ReLU.

The decoder returns {"features": semantic decoder output, "center",
"offset"}; `Segmenter` puts the semantic head on "features" and resizes all
three to the input. Offsets are predicted at the decoder's output stride
(4) and multiplied by it here, so after that resize they are in input pixels,
the unit of the targets (deeplab2 rescales them after resizing instead).

Follows deeplab2's `PanopticDeepLab` (model/decoder/panoptic_deeplab.py) and
its Cityscapes configs (low-level projections 64/32 and 32/16, instance
decoder 128, heads 256/32). The ASPP is segjax's DeepLabv3 ASPP (plain 3x3
atrous convs, image pooling, 1x1 projection), with deeplab2's dropout 0.1.
`instance=False` gives the semantic branch alone (semantic-only models).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.decoders.deeplab import ASPP
from segjax.models.registry import register
from segjax.ops.resize import resize


def separable5x5(features: int, dtype, name: str) -> layers.SeparableConvNormAct:
    """deeplab2's 5x5 depthwise-separable conv: depthwise, BN, ReLU, pointwise, BN, ReLU."""
    return layers.SeparableConvNormAct(features, 5, padding=2, depthwise_act=True, dtype=dtype,
                                       name=name)


@register("head", "panoptic_deeplab")
class PanopticDeepLabHead(nn.Module):
    """5x5 depthwise-separable conv (`channels`), then a 1x1 conv with bias to `num_classes`."""

    num_classes: int
    channels: int = 256
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = separable5x5(self.channels, self.dtype, "conv")(x, train=train)
        return layers.Conv(self.num_classes, 1, padding=0, dtype=self.dtype,
                           kernel_init=nn.initializers.truncated_normal(0.01),
                           name="classifier")(x)


class SingleDecoder(nn.Module):
    """ASPP (or a 1x1 projection) on the deepest feature, fused with low-level features."""

    features: int = 256
    aspp_features: int = 256
    rates: Sequence[int] = (6, 12, 18)
    low_level_strides: Sequence[int] = (8, 4)
    low_level_features: Sequence[int] = (64, 32)
    aspp_dropout: float = 0.1
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        if len(self.low_level_strides) != len(self.low_level_features):
            raise ValueError(f"panoptic_deeplab decoder: {len(self.low_level_strides)} "
                             f"low_level_strides but {len(self.low_level_features)} "
                             "low-level projection widths")
        missing = [s for s in self.low_level_strides if s not in features]
        if missing:
            raise KeyError(f"panoptic_deeplab decoder: low-level strides {missing} are not "
                           f"encoder strides; encoder strides: {sorted(features)}")
        x = features[max(features)]
        if self.rates:
            x = ASPP(tuple(self.rates), self.aspp_features, self.aspp_dropout, dtype=self.dtype,
                     name="aspp")(x, train=train)
        else:
            x = layers.ConvNormAct(self.aspp_features, 1, padding=0, dtype=self.dtype,
                                   name="projection")(x, train=train)
        for index, (stride, width) in enumerate(zip(self.low_level_strides,
                                                    self.low_level_features)):
            low = layers.ConvNormAct(width, 1, padding=0, dtype=self.dtype,
                                     name=f"low_level{index}")(features[stride], train=train)
            x = resize(x, low.shape[1:-1], align_corners=True)
            x = jnp.concatenate([x, low.astype(x.dtype)], axis=-1)
            x = separable5x5(self.features, self.dtype, f"fuse{index}")(x, train=train)
        return x


@register("decoder", "panoptic_deeplab",
          paper="Cheng et al. 2020, Panoptic-DeepLab, arXiv:1911.10194")
class PanopticDeepLabDecoder(nn.Module):
    """Semantic and instance decoders with the centre and offset heads (module docstring)."""

    rates: Sequence[int] = (6, 12, 18)
    aspp_features: int = 256
    semantic_features: int = 256
    instance_features: int = 128
    low_level_strides: Sequence[int] = (8, 4)
    semantic_low_level_features: Sequence[int] = (64, 32)
    instance_low_level_features: Sequence[int] = (32, 16)
    instance_head_channels: int = 32
    instance: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        branch = dict(aspp_features=self.aspp_features, rates=tuple(self.rates),
                      low_level_strides=tuple(self.low_level_strides), dtype=self.dtype)
        semantic = SingleDecoder(self.semantic_features,
                                 low_level_features=tuple(self.semantic_low_level_features),
                                 name="semantic_decoder", **branch)(features, train=train)
        if not self.instance:
            return semantic
        instance = SingleDecoder(self.instance_features,
                                 low_level_features=tuple(self.instance_low_level_features),
                                 name="instance_decoder", **branch)(features, train=train)
        center = PanopticDeepLabHead(1, self.instance_head_channels, self.dtype,
                                     name="center_head")(instance, train=train)
        offset = PanopticDeepLabHead(2, self.instance_head_channels, self.dtype,
                                     name="offset_head")(instance, train=train)
        output_stride = min(self.low_level_strides)
        return {"features": semantic, "center": center, "offset": offset * output_stride}
