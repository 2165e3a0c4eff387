"""The U-Net decoder of segmentation_models.pytorch (smp), and U-Net-ResNet34.

`UNetDecoder` ("unet") follows smp's `UnetDecoder` (center block off), so smp
`Unet` weights convert one to one and the U-Net-ResNet34 benchmark compares
the same network: starting from the deepest encoder feature, each block
upsamples 2x by nearest neighbour (to the skip's size when there is one),
concatenates the next shallower encoder feature ([upsampled, skip] in that
order), then applies two 3x3 conv + batch norm + ReLU. Encoder strides are
used deepest first; blocks past the shallowest skip (smp's last block, stride
2 -> 1) upsample without one. `decoder_channels` gives the width of each
block and so the number of blocks (smp's default (256, 128, 64, 32, 16) on a
stride-32 encoder ends at the input's resolution).

"unet_resnet34" is smp's `Unet("resnet34", classes=K)`: the torchvision
ResNet-34 encoder ({2, 4, 8, 16, 32}), this decoder and a 3x3 convolution
(with bias) to the classes.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers, registry
from segjax.models.segmenter import SegmentationHead, Segmenter
from segjax.ops.resize import resize

SMP_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class DecoderBlock(nn.Module):
    """Upsampling (to `size`), optional skip concatenation, two ConvNormAct 3x3.

    `upsample`: "nearest" (smp) resizes to `size`; "transpose" is a 2x2
    stride-2 transposed convolution to `features` channels (the U-Net
    paper's up-convolution, named "up"), which must land on `size`.
    """

    features: int
    norm: str | None = "batch"
    dtype: Any = None
    upsample: str = "nearest"

    @nn.compact
    def __call__(self, x, skip, size, *, train: bool):
        x = self._upsample(x, tuple(size))
        if skip is not None:
            x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
        for index in (1, 2):
            x = layers.ConvNormAct(self.features, 3, padding=1, norm=self.norm, dtype=self.dtype,
                                   name=f"conv{index}")(x, train=train)
        return x

    def _upsample(self, x, size):
        if self.upsample == "nearest":
            return resize(x, size, method="nearest")
        if self.upsample != "transpose":
            raise ValueError(f"decoder block: upsample must be 'nearest' or 'transpose', got "
                             f"{self.upsample!r}")
        x = layers.ConvTranspose(self.features, 2, 2, dtype=self.dtype, name="up")(x)
        if tuple(x.shape[1:-1]) != size:
            raise ValueError(f"decoder block: a 2x2 up-convolution gives {x.shape[1:-1]}, the "
                             f"skip is {size}; the input's spatial size must be divisible by "
                             "the encoder's deepest stride")
        return x


@registry.register("decoder", "unet", paper="Ronneberger et al. 2015 (smp's Unet decoder)")
class UNetDecoder(nn.Module):
    """smp's U-Net decoder over a stride-keyed encoder feature dict."""

    decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS
    norm: str | None = "batch"
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        if not features:
            raise ValueError("unet decoder: the encoder returned no features")
        strides = sorted(features, reverse=True)
        x = features[strides[0]]
        skips = [features[s] for s in strides[1:]]
        for index, width in enumerate(self.decoder_channels):
            skip = skips[index] if index < len(skips) else None
            size = skip.shape[1:-1] if skip is not None else [2 * n for n in x.shape[1:-1]]
            x = DecoderBlock(width, self.norm, self.dtype, name=f"block{index}")(
                x, skip, size, train=train)
        return x


@registry.register("model", "unet_resnet34",
                   paper="smp Unet('resnet34'); Ronneberger et al. 2015 + He et al. 2015",
                   input_shape=(1, 256, 256, 3))
def unet_resnet34(num_classes: int = 1, decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS,
                  dtype: Any = None):
    """U-Net with a ResNet-34 encoder in smp's layout (smp's default: 1 class)."""
    encoder = registry.build_part("encoder", {"name": "resnet34", "dtype": dtype})
    decoder = UNetDecoder(tuple(decoder_channels), dtype=dtype)
    head = SegmentationHead(num_classes, kernel_size=3, dtype=dtype)
    return Segmenter(encoder, decoder, head)
