"""A new paper in one file: registers a decoder without touching segjax/.

This example adds "residual_unet_decoder"-style idea in its simplest form: a
U-Net decoder whose blocks are residual. Its config
(experiments/example_paper/config.py) lists this module in `config.imports`
and names the new part; `segjax.main` imports it before building the model.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.registry import register
from segjax.ops.resize import resize


class ResidualBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, *, train: bool):
        shortcut = layers.Conv(self.features, 1, padding=0, name="shortcut")(x)
        y = layers.ConvNormAct(self.features, 3, padding=1, name="conv1")(x, train=train)
        y = layers.ConvNormAct(self.features, 3, padding=1, act=None, name="conv2")(y, train=train)
        return nn.relu(y + shortcut)


@register("decoder", "example_residual_unet")
class ResidualUNetDecoder(nn.Module):
    """Top-down path over encoder features keyed by stride, residual blocks at each level."""

    width: int = 16

    @nn.compact
    def __call__(self, features, *, train: bool = False):
        strides = sorted(features, reverse=True)
        x = features[strides[0]]
        for level, stride in enumerate(strides[1:]):
            skip = features[stride]
            x = resize(x, skip.shape[1:-1])
            x = jnp.concatenate([x, skip], axis=-1)
            x = ResidualBlock(self.width * 2 ** (len(strides) - 2 - level), name=f"block{level}")(
                x, train=train)
        return x
