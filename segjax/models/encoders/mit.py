"""Mix Transformer encoders MiT-B0..B5 (SegFormer, Xie et al. 2021, arXiv:2105.15203).

Four stages; each starts with an overlapping patch embedding (a 7x7 stride-4
convolution for the first stage, 3x3 stride 2 for the others, padding k // 2,
then a layer norm) and stacks transformer blocks:

    x = x + DropPath(EfficientSelfAttention(LayerNorm(x)))
    x = x + DropPath(MixFFN(LayerNorm(x)))

- Efficient self-attention: the keys and values are computed from the tokens
  reduced by a convolution with kernel and stride R (R = 8, 4, 2, 1 by stage)
  and a layer norm, so attention costs (HW)^2 / R^2 instead of (HW)^2.
- Mix-FFN: Dense (4x expansion), a 3x3 depthwise convolution, GELU, Dense.
  The depthwise convolution's zero padding leaks position information, so
  there is no positional encoding: the encoder runs at any input size.
- Each stage ends with a layer norm; its output is the feature of that
  stride. Stochastic depth rises linearly from 0 to `drop_path_rate` over all
  blocks.

Widths 32-64-160-256 (B0) and 64-128-320-512 (B1-B5), heads 1-2-5-8, depths
2-2-2-2 (B0, B1), 3-4-6-3 (B2), 3-4-18-3 (B3), 3-8-27-3 (B4), 3-6-40-3 (B5).

Features: {4: stage 1, 8: stage 2, 16: stage 3, 32: stage 4} (see
`segjax.models.encoders`), so every decoder (SegFormer's all-MLP decoder, FPN,
UPerNet, U-Net, DeepLabv3+) works on them. There is no output-stride option:
the stages are strided by their patch embeddings, not by dilatable
convolutions.

Layer-norm epsilon: the official implementation (NVlabs/SegFormer, also smp's
`mit_b*`) uses 1e-6 for the blocks' and stages' norms and PyTorch's 1e-5 for
the patch-embedding and sequence-reduction norms; transformers'
`SegformerModel` uses 1e-5 everywhere. `layer_norm_epsilon` sets the former
(default 1e-6, the official one); the latter are always 1e-5.

Module names (`stage{s}_patch_embed/conv`, `stage{s}_block{b}/attention/query`,
`.../attention/reduce`, `.../mlp/dwconv`, `stage{s}_norm`; stages and blocks
counted from 0) are mapped from transformers' and smp's layouts by
`segjax.convert.segformer`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from segjax.models import layers, transformer
from segjax.models.registry import register
from segjax.ops import activations

PATCH_NORM_EPSILON = 1e-5  # the patch-embedding and sequence-reduction norms (PyTorch default)

VARIANTS = {
    "b0": {"widths": (32, 64, 160, 256), "depths": (2, 2, 2, 2)},
    "b1": {"widths": (64, 128, 320, 512), "depths": (2, 2, 2, 2)},
    "b2": {"widths": (64, 128, 320, 512), "depths": (3, 4, 6, 3)},
    "b3": {"widths": (64, 128, 320, 512), "depths": (3, 4, 18, 3)},
    "b4": {"widths": (64, 128, 320, 512), "depths": (3, 8, 27, 3)},
    "b5": {"widths": (64, 128, 320, 512), "depths": (3, 6, 40, 3)},
}


class OverlapPatchEmbed(nn.Module):
    """A strided k x k convolution (padding k // 2) and a layer norm."""

    features: int
    kernel_size: int
    strides: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        x = layers.Conv(self.features, self.kernel_size, self.strides,
                        padding=self.kernel_size // 2, dtype=self.dtype, name="conv")(x)
        return transformer.layer_norm(PATCH_NORM_EPSILON, "norm", self.dtype)(x)


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys/values come from R x R-reduced tokens."""

    num_heads: int
    reduction: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        context = x
        if self.reduction > 1:
            context = layers.Conv(x.shape[-1], self.reduction, self.reduction, padding=0,
                                  dtype=self.dtype, name="reduce")(x)
            context = transformer.layer_norm(PATCH_NORM_EPSILON, "reduce_norm",
                                             self.dtype)(context)
        return transformer.multi_head_attention(x, context, num_heads=self.num_heads,
                                                dtype=self.dtype)


class MixFFN(nn.Module):
    """Dense (expand), 3x3 depthwise convolution, GELU, Dense (project back)."""

    hidden: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        x = transformer.dense(self.hidden, "fc1", dtype=self.dtype)(x)
        # He init over the 9 taps each output channel sees (fan-in of a depthwise kernel),
        # as the official code's fan_out // groups.
        x = layers.Conv(self.hidden, 3, padding=1, groups=self.hidden, dtype=self.dtype,
                        kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                        name="dwconv")(x)
        x = activations.activation("gelu")(x)
        return transformer.dense(width, "fc2", dtype=self.dtype)(x)


class MixBlock(nn.Module):
    """Pre-norm transformer block: efficient self-attention and Mix-FFN, each residual."""

    num_heads: int
    reduction: int
    mlp_ratio: int = 4
    drop_path: float = 0.0
    layer_norm_epsilon: float = 1e-6
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        norm = lambda name: transformer.layer_norm(self.layer_norm_epsilon, name, self.dtype)
        y = EfficientSelfAttention(self.num_heads, self.reduction, self.dtype,
                                   name="attention")(norm("norm1")(x))
        x = transformer.residual(x, y, self.drop_path, train=train, name="drop_path1")
        y = MixFFN(x.shape[-1] * self.mlp_ratio, self.dtype, name="mlp")(norm("norm2")(x))
        return transformer.residual(x, y, self.drop_path, train=train, name="drop_path2")


class MixTransformer(nn.Module):
    """MiT encoder: four stages returning {4, 8, 16, 32} features."""

    widths: Sequence[int] = VARIANTS["b0"]["widths"]
    depths: Sequence[int] = VARIANTS["b0"]["depths"]
    num_heads: Sequence[int] = (1, 2, 5, 8)
    reductions: Sequence[int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    drop_path_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    dtype: Any = None

    def _check(self) -> None:
        lengths = {name: len(value) for name, value in (
            ("widths", self.widths), ("depths", self.depths), ("num_heads", self.num_heads),
            ("reductions", self.reductions))}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"MixTransformer: widths, depths, num_heads and reductions need one "
                             f"entry per stage; got lengths {lengths}")
        for width, heads in zip(self.widths, self.num_heads):
            if width % heads:
                raise ValueError(f"MixTransformer: width {width} is not divisible by its "
                                 f"num_heads {heads}")

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        self._check()
        features = {}
        rates = transformer.drop_path_rates(self.drop_path_rate, self.depths)
        for stage, (width, depth, heads, reduction) in enumerate(zip(
                self.widths, self.depths, self.num_heads, self.reductions)):
            kernel, strides = (7, 4) if stage == 0 else (3, 2)
            x = OverlapPatchEmbed(width, kernel, strides, self.dtype,
                                  name=f"stage{stage}_patch_embed")(x)
            for index in range(depth):
                x = MixBlock(heads, reduction, self.mlp_ratio, rates[stage][index],
                             self.layer_norm_epsilon, self.dtype,
                             name=f"stage{stage}_block{index}")(x, train=train)
            x = transformer.layer_norm(self.layer_norm_epsilon, f"stage{stage}_norm",
                                       self.dtype)(x)
            features[4 * 2 ** stage] = x
        return features


_PAPER = "Xie et al. 2021, SegFormer (Mix Transformer), arXiv:2105.15203"

for _variant, _shape in VARIANTS.items():
    register("encoder", f"mit_{_variant}", paper=f"{_PAPER} (MiT-{_variant.upper()})",
             **_shape)(MixTransformer)
