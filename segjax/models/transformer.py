"""Transformer building blocks shared by segjax's transformer encoders (MiT, ViT).

- `multi_head_attention`: query/key/value/output projections around the one
  attention function (`segjax.ops.attention`), created in the calling
  module's scope (Dense layers named `query`, `key`, `value`, `out`), so a
  block's variables sit next to its norms and converters map transformers'
  `q_proj`/`query`... one to one. The keys and values may come from another
  token set (`context`), as in SegFormer's sequence-reduced attention.
- `SelfAttention`: that function as a module, the tokens attending to themselves.
- `MLP`: Dense, activation, Dense (`fc1`, `fc2`); the feed-forward of a ViT
  block (SegFormer's Mix-FFN puts a depthwise convolution in between and has
  its own module).
- `dense`: a Dense layer with the truncated-normal(0.02) initialisation that
  ViT, SegFormer and DPT use for their linear layers.

Tokens may keep their spatial layout, (N, H, W, C): Dense layers and layer
norms act on the last axis, and attention flattens the spatial axes itself.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.ops import attention as attention_ops
from segjax.ops import activations

trunc_normal_002 = nn.initializers.truncated_normal(stddev=0.02)


def dense(features: int, name: str, *, use_bias: bool = True, dtype: Any = None) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, kernel_init=trunc_normal_002,
                    name=name)


def _as_tokens(x: jax.Array) -> jax.Array:
    """(N, *spatial, C) -> (N, L, C)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def multi_head_attention(x: jax.Array, context: jax.Array | None = None, *, num_heads: int,
                         qkv_bias: bool = True, dtype: Any = None) -> jax.Array:
    """Multi-head attention of the tokens `x` over `context` (default: `x` itself).

    Must be called inside a compact module method: the projections are
    created in that module's scope. `x` is (N, *spatial, C) or (N, L, C); the
    result has `x`'s shape.
    """
    width = x.shape[-1]
    if width % num_heads:
        raise ValueError(f"attention: width {width} is not divisible by num_heads={num_heads}")
    context = x if context is None else context
    head_size = width // num_heads

    def heads(tokens, name):
        projected = dense(width, name, use_bias=qkv_bias, dtype=dtype)(_as_tokens(tokens))
        return projected.reshape(projected.shape[:2] + (num_heads, head_size))

    out = attention_ops.attention(heads(x, "query"), heads(context, "key"),
                                  heads(context, "value"))
    out = out.reshape(out.shape[:2] + (width,))
    return dense(width, "out", dtype=dtype)(out).reshape(x.shape[:-1] + (width,))


class SelfAttention(nn.Module):
    """`multi_head_attention` of the tokens over themselves, as a module (`query`...`out`)."""

    num_heads: int
    qkv_bias: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        return multi_head_attention(x, num_heads=self.num_heads, qkv_bias=self.qkv_bias,
                                    dtype=self.dtype)


class MLP(nn.Module):
    """Dense to `hidden` features, activation, Dense back to the input width."""

    hidden: int
    act: str = "gelu"
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        x = activations.activation(self.act)(dense(self.hidden, "fc1", dtype=self.dtype)(x))
        return dense(width, "fc2", dtype=self.dtype)(x)


def drop_path_rates(rate: float, depths) -> list[list[float]]:
    """Stochastic-depth rates rising linearly from 0 to `rate` over all blocks, per stage."""
    total = sum(depths)
    rates = [rate * index / max(total - 1, 1) for index in range(total)]
    stages, start = [], 0
    for depth in depths:
        stages.append(rates[start:start + depth])
        start += depth
    return stages


def layer_norm(epsilon: float, name: str, dtype: Any = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=epsilon, dtype=dtype, name=name)


def residual(x: jax.Array, branch: jax.Array, rate: float, *, train: bool, name: str):
    """x + DropPath(branch): a residual with stochastic depth (no parameters)."""
    return x + layers.DropPath(rate, name=name)(branch, train=train).astype(x.dtype)
