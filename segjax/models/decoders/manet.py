"""MA-Net: Multi-scale Attention Net (Fan, Wang, Li, Chen 2020, IEEE Access).

doi:10.1109/ACCESS.2020.3025372. A U-Net-shaped decoder with two attention blocks:
- Position-wise Attention Block (PAB) on the deepest feature: 1x1
  convolutions give queries and keys (`pab_channels` wide), a 3x3
  convolution the values; the pairwise query-key scores, normalised by a
  softmax, mix the values over all positions; the result is added to the
  input and passed through a 3x3 convolution.
- Multi-scale Fusion Attention Block (MFAB) per skip, deepest first: the
  high-level map goes through a 3x3 and a 1x1 conv + BN + ReLU to the skip's
  width and is upsampled (nearest) to the skip's size; two squeeze-excitation
  branches (global pool, 1x1 conv to width / `reduction`, ReLU, 1x1 conv,
  sigmoid), one on it and one on the skip, are summed into channel weights
  for the high-level map, which is concatenated with the skip and fused by two
  3x3 conv + BN + ReLU. Blocks past the shallowest skip are plain
  upsample-and-convolve blocks (`segjax.models.decoders.unet.DecoderBlock`).

The layout is segmentation_models_pytorch 0.6.0's `MAnet` (`PABBlock`,
`MFABBlock`, `DecoderBlock`), so its weights convert one to one
(`segjax.convert.smp_manet`). smp's PAB (`attention="smp"`, the default)
normalises the scores with *one* softmax over all N x N position pairs of an
image (not one per query), and reads its (N, C) result back as (C, H, W) by a
plain reshape, so channels and positions are interleaved; segjax keeps both
for parity. `attention="per_query"` gives conventional position attention
(a softmax per query position, each output at its own position, as DANet's
position attention module, Fu et al. 2019, arXiv:1809.02983); it has the same
parameters. The attention weights (batch, N, N) are sown as
`intermediates/.../pab/attention` (`apply(..., mutable="intermediates")`).
The upsampling goes to the skip's size (smp: x2, the same for inputs
divisible by 32), so a dilated encoder, whose deeper features share a size,
also works.

"manet_resnet34" is `smp.MAnet("resnet34")`: torchvision ResNet-34 at output
stride 32, decoder channels (256, 128, 64, 32, 16), a 3x3 head at the input's
resolution.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers, registry
from segjax.models.decoders.unet import SMP_DECODER_CHANNELS, DecoderBlock
from segjax.models.segmenter import SegmentationHead, Segmenter
from segjax.ops import pooling
from segjax.ops.resize import resize

ATTENTION_STYLES = ("smp", "per_query")


class PositionAttention(nn.Module):
    """The PAB: scores of 1x1 queries and keys mix 3x3 values over all positions."""

    pab_channels: int = 64
    attention: str = "smp"
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        if self.attention not in ATTENTION_STYLES:
            raise ValueError(f"manet decoder: attention must be one of {ATTENTION_STYLES}, "
                             f"got {self.attention!r}")
        batch, height, width, channels = x.shape
        positions = height * width
        keys = layers.Conv(self.pab_channels, 1, padding=0, dtype=self.dtype, name="top")(x)
        queries = layers.Conv(self.pab_channels, 1, padding=0, dtype=self.dtype,
                              name="center")(x)
        values = layers.Conv(channels, 3, padding=1, dtype=self.dtype, name="bottom")(x)
        scores = jnp.einsum("bip,bjp->bij", queries.reshape(batch, positions, -1),
                            keys.reshape(batch, positions, -1))
        values = values.reshape(batch, positions, channels)
        if self.attention == "smp":
            weights = jax.nn.softmax(scores.reshape(batch, -1), axis=-1).reshape(scores.shape)
        else:
            weights = jax.nn.softmax(scores, axis=-1)
        self.sow("intermediates", "attention", weights)
        mixed = jnp.einsum("bij,bjc->bic", weights, values)
        if self.attention == "smp":
            # smp reads the (N, C) result as (C, H, W) without a transpose.
            mixed = jnp.transpose(mixed.reshape(batch, channels, height, width), (0, 2, 3, 1))
        else:
            mixed = mixed.reshape(batch, height, width, channels)
        return layers.Conv(channels, 3, padding=1, dtype=self.dtype, name="out")(x + mixed)


class SqueezeExcite(nn.Module):
    """Channel weights: global pool, 1x1 conv to max(1, C // reduction), ReLU, 1x1 conv,
    sigmoid."""

    reduction: int = 16
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        y = layers.Conv(max(1, channels // self.reduction), 1, padding=0, dtype=self.dtype,
                        name="reduce")(pooling.global_avg_pool(x))
        y = layers.Conv(channels, 1, padding=0, dtype=self.dtype, name="expand")(jax.nn.relu(y))
        return jax.nn.sigmoid(y)


class MultiScaleFusionAttention(nn.Module):
    """The MFAB: the high-level map, reweighted by two SE branches, fused with the skip."""

    features: int
    reduction: int = 16
    dtype: Any = None

    @nn.compact
    def __call__(self, x, skip, *, train: bool = False):
        x = layers.ConvNormAct(x.shape[-1], 3, padding=1, dtype=self.dtype,
                               name="hl_conv0")(x, train=train)
        x = layers.ConvNormAct(skip.shape[-1], 1, padding=0, dtype=self.dtype,
                               name="hl_conv1")(x, train=train)
        x = resize(x, skip.shape[1:-1], method="nearest")
        weights = (SqueezeExcite(self.reduction, self.dtype, name="se_high")(x)
                   + SqueezeExcite(self.reduction, self.dtype, name="se_skip")(skip))
        x = jnp.concatenate([x * weights, skip.astype(x.dtype)], axis=-1)
        for index in (1, 2):
            x = layers.ConvNormAct(self.features, 3, padding=1, dtype=self.dtype,
                                   name=f"conv{index}")(x, train=train)
        return x


@registry.register("decoder", "manet",
                   paper="Fan et al. 2020, MA-Net, doi:10.1109/ACCESS.2020.3025372 (smp layout)")
class MAnetDecoder(nn.Module):
    """PAB on the deepest feature, then an MFAB per skip (deepest first), then plain blocks."""

    decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS
    pab_channels: int = 64
    reduction: int = 16
    attention: str = "smp"
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        if not features:
            raise ValueError("manet decoder: the encoder returned no features")
        strides = sorted(features, reverse=True)
        x = PositionAttention(self.pab_channels, self.attention, self.dtype, name="pab")(
            features[strides[0]])
        skips = [features[s] for s in strides[1:]]
        for index, width in enumerate(self.decoder_channels):
            if index < len(skips):
                x = MultiScaleFusionAttention(width, self.reduction, self.dtype,
                                              name=f"block{index}")(x, skips[index], train=train)
            else:
                x = DecoderBlock(width, dtype=self.dtype, name=f"block{index}")(
                    x, None, [2 * n for n in x.shape[1:-1]], train=train)
        return x


@registry.register("model", "manet_resnet34", input_shape=(1, 512, 512, 3),
                   paper="Fan et al. 2020, MA-Net, doi:10.1109/ACCESS.2020.3025372; "
                         "smp MAnet('resnet34')")
def manet_resnet34(num_classes: int = 1,
                   decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS,
                   pab_channels: int = 64, attention: str = "smp",
                   dtype: Any = None) -> Segmenter:
    """smp's `MAnet("resnet34", classes=num_classes)` (smp's default: 1 class)."""
    encoder = registry.build_part("encoder", {"name": "resnet34", "dtype": dtype})
    decoder = MAnetDecoder(tuple(decoder_channels), pab_channels, attention=attention,
                           dtype=dtype)
    return Segmenter(encoder, decoder, SegmentationHead(num_classes, kernel_size=3, dtype=dtype))
