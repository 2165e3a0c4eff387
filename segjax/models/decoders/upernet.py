"""UPerNet: Unified Perceptual Parsing's decoder (Xiao et al. 2018, arXiv:1807.10221).

A pyramid pooling module (PPM, Zhao et al. 2017) on the deepest feature, then
an FPN (Lin et al. 2017) top-down path over the shallower features, and a
fusion of all levels at the finest one:
- PPM: adaptive average pooling to 1x1, 2x2, 3x3 and 6x6 bins, each through
  a 1x1 conv + BN + ReLU and bilinearly upsampled back; the feature and the
  four branches are concatenated and fused by a 3x3 conv + BN + ReLU.
- FPN: deepest first, each shallower feature's 1x1 conv + BN + ReLU (lateral)
  is added to the running top-down map, bilinearly upsampled to it; each sum
  then goes through a 3x3 conv + BN + ReLU (the PPM output does not).
- Fusion: every level is upsampled to the finest level's size, concatenated
  (finest first, PPM last) and fused by a 3x3 conv + BN + ReLU.
All upsampling inside the decoder is bilinear with align_corners=False.

The layout is segmentation_models_pytorch 0.6.0's `UPerNet`
(`UPerNetDecoder`, `PSPModule`, `FPNLateralBlock`), so its weights convert one
to one (`segjax.convert.smp_upernet`). smp normalises every encoder feature it
uses with a LayerNorm over channels (epsilon 1e-6) before the PPM and the
laterals (`feature_norm=True`, the default); the paper's and
mmsegmentation's UPerHead have no such norm (`feature_norm=False`). The
decoder uses the features at strides >= 4 (smp's `features[2:]`).

"upernet_resnet34" is `smp.UPerNet("resnet34")`: torchvision ResNet-34 at
output stride 32, 256 decoder channels, a 1x1 head at 1/4 upsampled x4
(bilinear, align_corners=True).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers, registry
from segjax.models.segmenter import SegmentationHead, Segmenter
from segjax.ops import pooling
from segjax.ops.resize import resize

PPM_BINS = (1, 2, 3, 6)


class PyramidPooling(nn.Module):
    """PPM: adaptive-average-pooled branches (1x1 conv + BN + ReLU) + the input, fused by 3x3."""

    features: int = 256
    bins: Sequence[int] = PPM_BINS
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        size = x.shape[1:-1]
        branches = [x]
        for index, bins in enumerate(self.bins):
            pooled = layers.ConvNormAct(self.features, 1, padding=0, dtype=self.dtype,
                                        name=f"stage{index}")(
                pooling.adaptive_avg_pool(x, bins), train=train)
            branches.append(resize(pooled, size))
        return layers.ConvNormAct(self.features, 3, padding=1, dtype=self.dtype,
                                  name="bottleneck")(jnp.concatenate(branches, -1), train=train)


@registry.register("decoder", "upernet",
                   paper="Xiao et al. 2018, UPerNet, arXiv:1807.10221 (smp layout)")
class UPerNetDecoder(nn.Module):
    """PPM on the deepest feature + FPN over the features at stride >= `min_stride`, fused."""

    features: int = 256
    bins: Sequence[int] = PPM_BINS
    feature_norm: bool = True
    min_stride: int = 4
    dtype: Any = None

    def normalized(self, features: dict[int, jax.Array], strides: list[int]) -> list[jax.Array]:
        if not self.feature_norm:
            return [features[s] for s in strides]
        return [nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=self.dtype,
                             name=f"norm{index}")(features[s])
                for index, s in enumerate(strides)]

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        strides = sorted(s for s in features if s >= self.min_stride)
        if not strides:
            raise ValueError(f"upernet decoder: no encoder feature at stride >= min_stride="
                             f"{self.min_stride}; encoder strides: {sorted(features)}")
        *shallow, deepest = self.normalized(features, strides)
        top_down = [PyramidPooling(self.features, tuple(self.bins), self.dtype, name="ppm")(
            deepest, train=train)]
        for index, lateral in enumerate(reversed(shallow)):
            lateral = layers.ConvNormAct(self.features, 1, padding=0, dtype=self.dtype,
                                         name=f"lateral{index}")(lateral, train=train)
            top_down.append(lateral + resize(top_down[-1], lateral.shape[1:-1]))
        levels = [top_down[0]] + [
            layers.ConvNormAct(self.features, 3, padding=1, dtype=self.dtype,
                               name=f"fpn_conv{index}")(level, train=train)
            for index, level in enumerate(top_down[1:])]
        size = levels[-1].shape[1:-1]
        fused = jnp.concatenate([resize(level, size) for level in reversed(levels)], -1)
        return layers.ConvNormAct(self.features, 3, padding=1, dtype=self.dtype,
                                  name="fusion")(fused, train=train)


@registry.register("model", "upernet_resnet34", input_shape=(1, 512, 512, 3),
                   paper="Xiao et al. 2018, UPerNet, arXiv:1807.10221; smp UPerNet('resnet34')")
def upernet_resnet34(num_classes: int = 1, decoder_channels: int = 256,
                     feature_norm: bool = True, dtype: Any = None) -> Segmenter:
    """smp's `UPerNet("resnet34", classes=num_classes)` (smp's default: 1 class)."""
    encoder = registry.build_part("encoder", {"name": "resnet34", "dtype": dtype})
    decoder = UPerNetDecoder(decoder_channels, feature_norm=feature_norm, dtype=dtype)
    return Segmenter(encoder, decoder, SegmentationHead(num_classes, kernel_size=1, dtype=dtype),
                     align_corners=True)
