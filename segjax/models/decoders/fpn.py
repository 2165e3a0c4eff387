"""The semantic-segmentation FPN head of Panoptic FPN (Kirillov et al. 2019, arXiv:1901.02446).

The "fpn" decoder builds a feature pyramid (Lin et al. 2017, arXiv:1612.03144)
on the deepest `levels` encoder features (P2..P5, strides 4..32, on a
stride-32 encoder): a 1x1 lateral convolution (with bias) per level, and a
top-down path adding each level's lateral to the nearest-upsampled level
above it. Each pyramid level then goes through the semantic branch of Panoptic
FPN: as many stages of 3x3 conv + GroupNorm(32) + ReLU + x2 bilinear
upsampling as it takes to reach the finest level (one conv and no upsampling
for P2), `segmentation_channels` wide; the maps are summed (or concatenated),
and a 1x1 convolution gives the classes at stride 4, upsampled to the input.

Two layouts:
- smp (the decoder's defaults, `fpn_resnet34`): segmentation_models_pytorch
  0.6's `FPNDecoder`, so smp `FPN` weights convert one to one
  (`segjax.convert.smp_fpn`). smp departs from the papers: its pyramid has no
  3x3 output convolution on the merged maps, it adds channel dropout (0.2)
  after the merge, and upsamples bilinearly with align_corners=True.
- paper (`fpn_resnet50`): Panoptic FPN's semantic branch on a ResNet-50 FPN as
  the paper and its reference (detectron2's `SemSegFPNHead`) build it: a 3x3
  output convolution (with bias) on every merged map (`output_convs=True`),
  no dropout, align_corners=False.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.registry import build_part, register
from segjax.models.segmenter import SegmentationHead, Segmenter
from segjax.ops.resize import resize

MERGE_POLICIES = ("add", "cat")


@register("decoder", "fpn",
          paper="Kirillov et al. 2019, Panoptic FPN semantic branch, arXiv:1901.02446")
class FPNDecoder(nn.Module):
    """A feature pyramid and Panoptic FPN's semantic branch (module docstring)."""

    pyramid_channels: int = 256
    segmentation_channels: int = 128
    levels: int = 4
    merge: str = "add"
    dropout: float = 0.2
    output_convs: bool = False
    align_corners: bool = True
    num_groups: int = 32
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        if self.merge not in MERGE_POLICIES:
            raise ValueError(f"fpn decoder: merge must be one of {MERGE_POLICIES}, got "
                             f"{self.merge!r}")
        strides = sorted(features, reverse=True)[:self.levels]
        if len(strides) < self.levels:
            raise ValueError(f"fpn decoder: levels={self.levels} needs {self.levels} encoder "
                             f"features, the encoder gives strides {sorted(features)}")
        pyramid = self._pyramid([features[s] for s in strides])
        maps = [self._semantic_stage(pyramid, level, train) for level in range(len(pyramid))]
        x = sum(maps) if self.merge == "add" else jnp.concatenate(maps, axis=-1)
        return layers.ChannelDropout(self.dropout)(x, train=train)

    def _pyramid(self, inputs: list[jax.Array]) -> list[jax.Array]:
        """P levels, deepest first: lateral 1x1 + nearest-upsampled level above."""
        pyramid = []
        for level, x in enumerate(inputs):
            lateral = layers.Conv(self.pyramid_channels, 1, padding=0, dtype=self.dtype,
                                  name=f"lateral{level}")(x)
            if pyramid:
                lateral = resize(pyramid[-1], lateral.shape[1:-1], "nearest") + lateral
            pyramid.append(lateral)
        if self.output_convs:
            pyramid = [layers.Conv(self.pyramid_channels, 3, padding=1, dtype=self.dtype,
                                   name=f"output{level}")(p) for level, p in enumerate(pyramid)]
        return pyramid

    def _semantic_stage(self, pyramid: list[jax.Array], level: int, train: bool) -> jax.Array:
        """conv + GN + ReLU (+ x2 bilinear) stages taking `level` to the finest level's size."""
        x = pyramid[level]
        upsamples = len(pyramid) - 1 - level
        for stage in range(max(upsamples, 1)):
            x = layers.ConvNormAct(self.segmentation_channels, 3, padding=1, norm="group",
                                   num_groups=self.num_groups, dtype=self.dtype,
                                   name=f"seg{level}_{stage}")(x, train=train)
            if stage < upsamples:
                x = resize(x, pyramid[level + stage + 1].shape[1:-1],
                                  align_corners=self.align_corners)
        return x


def smp_fpn(encoder: str = "resnet34", num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """smp's `FPN(encoder, classes=num_classes)` on a registered encoder."""
    return Segmenter(build_part("encoder", {"name": encoder, "dtype": dtype}),
                     FPNDecoder(dtype=dtype), SegmentationHead(num_classes, 1, dtype=dtype),
                     align_corners=True)


@register("model", "fpn_resnet34",
          paper="smp FPN('resnet34'); Kirillov et al. 2019, arXiv:1901.02446",
          input_shape=(1, 256, 256, 3))
def fpn_resnet34(num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """The FPN semantic head on ResNet-34 in smp's layout (smp's default: 1 class)."""
    return smp_fpn("resnet34", num_classes, dtype)


@register("model", "fpn_resnet50",
          paper="Kirillov et al. 2019, Panoptic FPN semantic branch (R50-FPN), arXiv:1901.02446",
          input_shape=(1, 512, 512, 3))
def fpn_resnet50(num_classes: int = 19, dtype: Any = None) -> Segmenter:
    """The paper's semantic FPN on ResNet-50: FPN output convs, no dropout, align_corners=False."""
    decoder = FPNDecoder(output_convs=True, dropout=0.0, align_corners=False, dtype=dtype)
    return Segmenter(build_part("encoder", {"name": "resnet50", "dtype": dtype}), decoder,
                     SegmentationHead(num_classes, 1, dtype=dtype), align_corners=False)
