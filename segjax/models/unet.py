"""U-Net (Ronneberger, Fischer, Brox 2015, arXiv:1505.04597), 2D and 3D.

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
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.registry import register


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
    features: int
    padding: str
    norm: str | None
    use_bias: bool
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        for index in range(2):
            x = layers.ConvNormAct(self.features, 3, padding=self.padding.upper(),
                                   norm=self.norm, use_bias=self.use_bias, dtype=self.dtype,
                                   name=f"conv{index + 1}")(x, train=train)
        return x


@register("model", "unet", paper="Ronneberger et al. 2015, U-Net, arXiv:1505.04597",
          input_shape=(1, 572, 572, 1), test_input_shape=(1, 188, 188, 1))
class UNet(nn.Module):
    """The U-Net of the paper; `padding`, `norm`, `depth`, `width` generalise it."""

    num_classes: int = 2
    width: int = 64
    depth: int = 4
    padding: str = "valid"
    norm: str | None = None
    use_bias: bool | None = None
    upsample: str = "transpose"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.padding not in ("valid", "same"):
            raise ValueError(f"UNet.padding must be 'valid' or 'same', got {self.padding!r}")
        spatial = x.shape[1:-1]
        if self.padding == "valid":
            for size in spatial:
                valid_output_size(size, self.depth)
        elif any(s % 2 ** self.depth for s in spatial):
            raise ValueError(f"U-Net (padding='same', depth={self.depth}): input spatial size "
                             f"{spatial} must be divisible by {2 ** self.depth}")
        use_bias = self.use_bias if self.use_bias is not None else self.norm is None
        block = lambda features, name: DoubleConv(features, self.padding, self.norm, use_bias,
                                                  self.dtype, name=name)
        skips = []
        for level in range(self.depth):
            x = block(self.width * 2 ** level, f"down{level}")(x, train=train)
            skips.append(x)
            x = layers.max_pool(x, 2)
        x = block(self.width * 2 ** self.depth, "bottom")(x, train=train)
        for level in reversed(range(self.depth)):
            features = self.width * 2 ** level
            x = self._upsample(x, features, f"up{level}")
            skip = layers.center_crop(skips[level], x.shape[1:-1])
            x = jnp.concatenate([skip, x.astype(skip.dtype)], axis=-1)
            x = block(features, f"up{level}_conv")(x, train=train)
        logits = layers.Conv(self.num_classes, 1, padding=0, dtype=self.dtype,
                             name="classifier")(x)
        return {"logits": logits}

    def _upsample(self, x, features: int, name: str):
        if self.upsample == "transpose":
            return layers.ConvTranspose(features, 2, 2, dtype=self.dtype, name=name)(x)
        if self.upsample == "bilinear":
            x = layers.resize(x, [2 * s for s in x.shape[1:-1]])
            return layers.Conv(features, 1, padding=0, dtype=self.dtype, name=name)(x)
        raise ValueError(f"UNet.upsample must be 'transpose' or 'bilinear', got {self.upsample!r}")
