"""LinkNet (Chaurasia & Culurciello 2017, arXiv:1707.03718): the "linknet" decoder and Linknet-ResNet34.

The decoder follows segmentation_models_pytorch 0.6's `LinknetDecoder`, so
smp `Linknet` weights convert one to one (`segjax.convert.smp_linknet`).
Starting from the deepest encoder feature, each block is the paper's decoder
block (1x1 conv to a quarter of the input width, a x2 transposed conv,
1x1 conv to the output width, each + BN + ReLU) and its output is added to
the next shallower encoder feature (the "link": no concatenation, so the
decoder stays light). A block's output width is that skip's width; blocks
past the shallowest skip have no link and keep their width, except the last,
which gives `prefinal_channels`. There is one block per x2 of the deepest
stride (5 on a stride-32 encoder), so the output is at the input's
resolution and a 1x1 convolution gives the classes.

Where smp departs from the paper, kept here for parity: the transposed conv
is 4x4 with padding 1 (with a bias, before BN) instead of 3x3; the stride-2
stem output is linked too; and the paper's final block (3x3 full-conv to 32
channels, 3x3 conv, 2x2 full-conv to the classes) is a fifth decoder block to
32 channels and a 1x1 classifier.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.registry import build_part, register
from segjax.models.segmenter import SegmentationHead, Segmenter


class LinknetBlock(nn.Module):
    """1x1 reduce to in/4, 4x4 stride-2 transposed conv, 1x1 expand; each + norm + ReLU."""

    features: int
    norm: str | None = "batch"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        middle = x.shape[-1] // 4
        x = layers.ConvNormAct(middle, 1, padding=0, norm=self.norm, dtype=self.dtype,
                               name="reduce")(x, train=train)
        x = layers.ConvTranspose(middle, 4, 2, padding=1, dtype=self.dtype, name="up")(x)
        x = jax.nn.relu(layers.Norm(self.norm, dtype=self.dtype, name="up_norm")(x, train=train))
        return layers.ConvNormAct(self.features, 1, padding=0, norm=self.norm, dtype=self.dtype,
                                  name="expand")(x, train=train)


@register("decoder", "linknet", paper="Chaurasia & Culurciello 2017, LinkNet, arXiv:1707.03718")
class LinknetDecoder(nn.Module):
    """smp's Linknet decoder over a stride-keyed encoder feature dict."""

    prefinal_channels: int = 32
    num_blocks: int | None = None
    norm: str | None = "batch"
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        if not features:
            raise ValueError("linknet decoder: the encoder returned no features")
        strides = sorted(features, reverse=True)
        x = features[strides[0]]
        skips = [features[s] for s in strides[1:]]
        num_blocks = self.num_blocks or max(1, round(math.log2(strides[0])))
        for index in range(num_blocks):
            skip = skips[index] if index < len(skips) else None
            if skip is not None:
                width = skip.shape[-1]
            else:
                width = self.prefinal_channels if index == num_blocks - 1 else x.shape[-1]
            x = LinknetBlock(width, self.norm, self.dtype, name=f"block{index}")(x, train=train)
            if skip is not None:
                if x.shape[1:-1] != skip.shape[1:-1]:
                    raise ValueError(f"linknet decoder: block {index} gives {x.shape[1:-1]}, the "
                                     f"stride-{strides[index + 1]} feature is "
                                     f"{skip.shape[1:-1]}; the input's spatial size must be "
                                     f"divisible by {strides[0]}")
                x = x + skip.astype(x.dtype)
        return x


def smp_linknet(encoder: str = "resnet34", num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """smp's `Linknet(encoder, classes=num_classes)` on a registered encoder."""
    return Segmenter(build_part("encoder", {"name": encoder, "dtype": dtype}),
                     LinknetDecoder(dtype=dtype), SegmentationHead(num_classes, 1, dtype=dtype))


@register("model", "linknet_resnet34",
          paper="smp Linknet('resnet34'); Chaurasia & Culurciello 2017, arXiv:1707.03718",
          input_shape=(1, 256, 256, 3))
def linknet_resnet34(num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """Linknet on ResNet-34 in smp's layout (smp's default: 1 class)."""
    return smp_linknet("resnet34", num_classes, dtype)
