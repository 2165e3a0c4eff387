"""VGG-16 (Simonyan & Zisserman 2014, arXiv:1409.1556) as a segmentation encoder.

Two segmentation papers build on it, and both variants are options here:

- FCN (Long et al. 2015, arXiv:1411.4038): `fc="fcn"` turns the classifier's
  fc6/fc7 into a 7x7 (4096, unpadded) and a 1x1 (4096) convolution, and
  `input_padding=100` pads conv1_1 by 100 pixels as the reference Caffe nets
  do, so that any input size survives the unpadded 7x7 fc6. The FCN skips read
  pool3 and pool4.
- DeepLab-LargeFOV (Chen et al. 2015, arXiv:1412.7062): `output_stride=8`
  makes pool4 and pool5 3x3 stride-1 poolings (all poolings become 3x3 with
  padding 1) and dilates conv5 by 2; its fc6 (3x3, dilation 12, 1024) and fc7
  (1x1, 1024) are `fc="largefov"` here or the "largefov" decoder.

Pooling follows Caffe (ceil mode), as both reference nets were Caffe nets; for
inputs divisible by 32 this is torchvision's VGG pooling too, so torchvision's
`vgg16` weights convert one to one (segjax.convert.vgg).

Features are keyed by nominal stride (see `segjax.models.encoders`) and hold
the output of each pooling (pool1 at 2, ..., pool5 at 32), as the FCN skips
need; fc7 (when `fc` is set) replaces pool5 at 32. With `output_stride` 8,
pool4 and pool5 (keys 16 and 32) stay at H / 8.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.encoders import atrous_schedule, check_output_stride
from segjax.models.registry import register
from segjax.ops import pooling

# (channels, convolutions) per stage of VGG-16 (configuration D).
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

# The convolutionalised classifier layers: kernel, dilation, padding, channels.
FC_PRESETS = {
    "fcn": dict(kernel_size=7, dilation=1, padding=0, features=4096),
    "largefov": dict(kernel_size=3, dilation=12, padding=12, features=1024),
}


def caffe_max_pool(x, window: int, stride: int, padding: int):
    """Max pooling with Caffe's output size: ceil((n + 2p - k) / s) + 1, clipped.

    Caffe drops the last window when it would start inside the bottom/right
    padding. The extra (high-side) padding is -inf, so it never wins the max.
    """
    pads = [(0, 0)]
    for n in x.shape[1:-1]:
        out = math.ceil((n + 2 * padding - window) / stride) + 1
        if padding and (out - 1) * stride >= n + padding:
            out -= 1
        high = max((out - 1) * stride + window - n - padding, 0)
        pads.append((padding, high))
    pads.append((0, 0))
    x = jnp.pad(x, pads, constant_values=-jnp.inf)
    return pooling.max_pool(x, window, stride, padding="VALID")


class FullyConv(nn.Module):
    """VGG's fc6 and fc7 as convolutions, each followed by ReLU and dropout."""

    features: int = 4096
    kernel_size: int = 7
    dilation: int = 1
    padding: Any = 0
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = layers.ConvNormAct(self.features, self.kernel_size, padding=self.padding,
                               dilation=self.dilation, norm=None, dtype=self.dtype,
                               name="fc6")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = layers.ConvNormAct(self.features, 1, padding=0, norm=None, dtype=self.dtype,
                               name="fc7")(x)
        return nn.Dropout(self.dropout, deterministic=not train)(x)


@register("encoder", "vgg16", paper="Simonyan & Zisserman 2014, VGG, arXiv:1409.1556")
class VGG16(nn.Module):
    """VGG-16 conv1_1..pool5 (+ optional convolutionalised fc6/fc7).

    `norm="batch"` gives VGG-16-BN. `input_padding` is conv1_1's padding (1
    normally, 100 for FCN).
    """

    output_stride: int = 32
    fc: str | None = None
    input_padding: int = 1
    norm: str | None = None
    dropout: float = 0.5
    dtype: Any = None
    widths: Sequence[int] | None = None   # the five stages' widths (default VGG16_STAGES')
    fc_features: int | None = None        # fc6/fc7 width (default: the fc preset's)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        widths = tuple(self.widths or (channels for channels, _ in VGG16_STAGES))
        if len(widths) != len(VGG16_STAGES):
            raise ValueError(f"VGG16: widths needs {len(VGG16_STAGES)} stage widths, got {widths}")
        if self.fc is not None and self.fc not in FC_PRESETS:
            raise ValueError(f"VGG16: fc must be one of {sorted(FC_PRESETS)} or None, "
                             f"got {self.fc!r}")
        check_output_stride("VGG16", self.output_stride)
        schedule = atrous_schedule((2,) * len(VGG16_STAGES), self.output_stride)
        # DeepLab's variant pools 3x3 with padding 1 so that stride-1 poolings keep the size.
        window, pool_pad = (2, 0) if self.output_stride == 32 else (3, 1)
        features = {}
        for stage, ((_, depth), channels, unit) in enumerate(zip(VGG16_STAGES, widths, schedule),
                                                            1):
            dilation = unit.dilation_before
            for index in range(1, depth + 1):
                first = stage == 1 and index == 1
                padding = self.input_padding if first else dilation
                x = layers.ConvNormAct(channels, 3, padding=padding, dilation=dilation,
                                       norm=self.norm, dtype=self.dtype,
                                       name=f"conv{stage}_{index}")(x, train=train)
            x = caffe_max_pool(x, window, unit.stride, pool_pad)
            features[2 ** stage] = x
        if self.fc is not None:
            preset = dict(FC_PRESETS[self.fc])
            if self.fc_features is not None:
                preset.update(features=self.fc_features)
            dilation = schedule[-1].dilation
            if self.fc == "fcn" and dilation > 1:
                preset.update(dilation=dilation)
            features[32] = FullyConv(**preset, dropout=self.dropout, dtype=self.dtype,
                                     name="fc")(x, train=train)
        return features
