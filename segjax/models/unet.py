"""U-Net (Ronneberger, Fischer, Brox 2015, arXiv:1505.04597), 2D and 3D, and No New-Net.

The paper's network (Figure 1): a contracting path of two unpadded 3x3
convolutions + ReLU per level and 2x2 max pooling, 64 channels at the top
doubling to 1024 at the bottom; an expansive path of 2x2 up-convolutions
halving the channels, concatenation with the centre-cropped feature map of the
contracting path, and two 3x3 convolutions; a final 1x1 convolution to the
classes. 23 convolutional layers; a 572x572 tile gives 388x388 logits, aligned
with the centre of the input (overlap-tile: the input is the output region
plus a 92-pixel mirrored context on each side).

`padding="same"` gives the common padded variant (output size = input size)
and `norm="batch"` adds batch normalisation after each 3x3 convolution. The
spatial rank is read from the input, so a (N, D, H, W, C) volume gives the 3D
U-Net of Cicek et al. with the same code.

"nonewnet" is the same class with the settings of No New-Net (Isensee et al.
2018, arXiv:1809.10483, the 3D U-Net of the BraTS 2018 entry and of nnU-Net):
same padding, instance normalisation, leaky ReLU (slope 1e-2), 30 channels at
the top doubling to 480 at the bottom (4 poolings), and the number of feature
maps reduced right before each upsampling (the paper's Fig. 1): the last
convolution of every block that is followed by an upsampling outputs the width
of the level it is upsampled into (the bottom block 240 instead of 480, the
decoder blocks 120, 60, 30), so the upsampling itself is parameter-free
(trilinear interpolation) and the concatenation has twice the skip's width.
The layout follows DKFZ's `Generic_UNet` with `convolutional_upsampling=False`
(nnU-Net v1, the code base the paper's network came from): 2x max pooling,
two 3x3x3 conv-norm-activation per level, a 1x1x1 convolution to the classes.
Departures: the convolutions before instance normalisation have no bias (the
normalisation removes it; `use_bias=True` adds it back), and the deep
supervision heads (`deep_supervision=k`: 1x1 convolutions on the outputs of
the k decoder levels below the top, returned as `aux_logits`) are upsampled
to the output resolution so that the loss compares them with the full-size
labels, where nnU-Net downsamples the labels instead. Defaults: 4 input
modalities (read from the input) and 4 classes (the Medical Segmentation
Decathlon's Task01 labels), 128^3 patches.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.registry import register
from segjax.ops import pooling
from segjax.ops.resize import center_crop, resize


def valid_input_size(bottom: int, depth: int = 4) -> int:
    """Input size whose contracting path reaches size `bottom` after `depth` poolings."""
    return 2 ** depth * bottom + 4 * (2 ** depth - 1)


def valid_sizes_message(depth: int, count: int = 6) -> str:
    """The smallest input sizes a valid-conv U-Net of `depth` accepts."""
    smallest_bottom = 5 + (4 * (2 ** depth - 1)) // 2 ** depth
    return ", ".join(str(valid_input_size(b, depth))
                     for b in range(smallest_bottom, smallest_bottom + count))


def valid_output_size(input_size: int, depth: int = 4) -> int:
    """Output size of a valid-conv U-Net for an input size (ValueError if invalid)."""
    size = input_size
    for level in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            raise ValueError(
                f"U-Net (padding='valid', depth={depth}): input size {input_size} reaches "
                f"odd or empty size {size} before pooling at level {level}; valid input "
                f"sizes include {valid_sizes_message(depth)}, ... (every +{2 ** depth})")
        size //= 2
    size -= 4
    for _ in range(depth):
        size = size * 2 - 4
    if size <= 0:
        raise ValueError(f"U-Net: input size {input_size} is too small for depth {depth}")
    return size


class DoubleConv(nn.Module):
    """Two 3x3 ConvNormAct; the second outputs `out_features` (default: `features`)."""

    features: int
    padding: str
    norm: str | None
    use_bias: bool
    dtype: Any = None
    act: str = "relu"
    out_features: int | None = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        widths = (self.features, self.out_features or self.features)
        for index, features in enumerate(widths):
            x = layers.ConvNormAct(features, 3, padding=self.padding.upper(),
                                   norm=self.norm, act=self.act, use_bias=self.use_bias,
                                   dtype=self.dtype, name=f"conv{index + 1}")(x, train=train)
        return x


UPSAMPLES = ("transpose", "bilinear", "linear")


@register("model", "unet", paper="Ronneberger et al. 2015, U-Net, arXiv:1505.04597",
          input_shape=(1, 572, 572, 1), test_input_shape=(1, 188, 188, 1))
class UNet(nn.Module):
    """The U-Net of the paper; the fields below generalise it (No New-Net is one setting).

    `upsample`: 'transpose' (2x2 up-convolution halving the channels, the
    paper), 'bilinear' (interpolation + 1x1 convolution halving them) or
    'linear' ((bi/tri)linear interpolation alone, no parameters).
    `reduce_before_upsample`: the last convolution before each upsampling
    outputs the width of the level above (No New-Net's Fig. 1).
    `deep_supervision`: auxiliary 1x1 heads on that many decoder levels below
    the top, upsampled to the logits' size and returned as `aux_logits`
    (same padding only).
    """

    num_classes: int = 2
    width: int = 64
    depth: int = 4
    padding: str = "valid"
    norm: str | None = None
    use_bias: bool | None = None
    upsample: str = "transpose"
    act: str = "relu"
    reduce_before_upsample: bool = False
    deep_supervision: int = 0
    dtype: Any = None

    def _check(self, spatial) -> None:
        if self.padding not in ("valid", "same"):
            raise ValueError(f"UNet.padding must be 'valid' or 'same', got {self.padding!r}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"UNet.upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if not 0 <= self.deep_supervision < self.depth:
            raise ValueError(f"UNet.deep_supervision={self.deep_supervision} must be in "
                             f"[0, depth={self.depth}) (aux heads on the decoder levels below "
                             "the top)")
        if self.deep_supervision and self.padding != "same":
            raise ValueError("UNet.deep_supervision needs padding='same' (the aux logits are "
                             "upsampled to the logits' size)")
        if self.padding == "valid":
            for size in spatial:
                valid_output_size(size, self.depth)
        elif any(s % 2 ** self.depth for s in spatial):
            raise ValueError(f"U-Net (padding='same', depth={self.depth}): input spatial size "
                             f"{spatial} must be divisible by {2 ** self.depth}")

    def _width(self, level: int) -> int:
        return self.width * 2 ** level

    def _block(self, level: int, name: str, *, reduce: bool):
        """The two convolutions of `level`; with `reduce`, the second outputs level - 1's width."""
        use_bias = self.use_bias if self.use_bias is not None else self.norm is None
        out_features = self._width(level - 1) if reduce and level > 0 else None
        return DoubleConv(self._width(level), self.padding, self.norm, use_bias, self.dtype,
                          self.act, out_features, name=name)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        spatial = x.shape[1:-1]
        self._check(spatial)
        reduce = self.reduce_before_upsample
        skips = []
        for level in range(self.depth):
            x = self._block(level, f"down{level}", reduce=False)(x, train=train)
            skips.append(x)
            x = pooling.max_pool(x, 2)
        x = self._block(self.depth, "bottom", reduce=reduce)(x, train=train)
        decoded = {}
        for level in reversed(range(self.depth)):
            x = self._upsample(x, self._width(level), f"up{level}")
            skip = center_crop(skips[level], x.shape[1:-1])
            x = jnp.concatenate([skip, x.astype(skip.dtype)], axis=-1)
            x = self._block(level, f"up{level}_conv", reduce=reduce)(x, train=train)
            decoded[level] = x
        logits = layers.Conv(self.num_classes, 1, padding=0, dtype=self.dtype,
                             name="classifier")(x)
        outputs = {"logits": logits}
        if self.deep_supervision:
            outputs["aux_logits"] = [
                resize(layers.Conv(self.num_classes, 1, padding=0, dtype=self.dtype,
                                          name=f"aux{level}")(decoded[level]),
                              logits.shape[1:-1])
                for level in range(1, self.deep_supervision + 1)]
        return outputs

    def _upsample(self, x, features: int, name: str):
        size = [2 * s for s in x.shape[1:-1]]
        if self.upsample == "transpose":
            return layers.ConvTranspose(features, 2, 2, dtype=self.dtype, name=name)(x)
        x = resize(x, size)
        if self.upsample == "bilinear":
            return layers.Conv(features, 1, padding=0, dtype=self.dtype, name=name)(x)
        return x


# No New-Net (Isensee et al. 2018): UNet with the paper's settings (module docstring).
NO_NEW_NET = dict(num_classes=4, width=30, depth=4, padding="same", norm="instance",
                  act="leaky_relu", upsample="linear", reduce_before_upsample=True)

register("model", "nonewnet", paper="Isensee et al. 2018, No New-Net, arXiv:1809.10483",
         input_shape=(1, 128, 128, 128, 4), test_input_shape=(1, 16, 16, 16, 4),
         **NO_NEW_NET)(UNet)
