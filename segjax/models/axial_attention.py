"""Position-sensitive axial attention along one spatial axis (Wang et al. 2020, arXiv:2003.07853).

Axial-DeepLab factorises 2D self-attention into a height-axis and a width-axis
attention; each is 1D attention over the pixels of one column (or row), so a
layer sees the whole axis (global span) at O(L^2) per column instead of
O((HW)^2) for the image. `AxialAttention(features, axis)` is one such layer on
an (N, H, W, C) input:

    q, k, v  = BN(x W_qkv)                   1x1 projection, no bias; per head the
                                             value depth is twice the query depth
    logits   = BN(q.k) + BN(q.r^q) + BN(k.r^k)     over key positions o of query p
    w        = softmax_o(logits)
    y        = BN(sum_o w v_o) + BN(sum_o w r^v)

r^q, r^k, r^v are learned relative positional encodings r_{o - p}, one table
per term of 2R + 1 offsets -R..R, shared by the heads (the paper's
position-sensitivity). With a global span R = L - 1, the (2L - 1) offsets of
an axis of length L; `max_length` fixes L at construction, otherwise the
length seen at initialisation does; offsets beyond R on a longer input use the
outermost encodings (deeplab2's clipping). A local `span` m (odd; the paper's
65) lets query p attend keys |o - p| <= m // 2 only, with m encodings.

Each of the three similarity terms has its own batch norm per head (stats over
batch, queries and keys), and the two retrieved terms are normalised per
channel separately, as the official PyTorch code (csrhddlam/axial-deeplab,
`bn_similarity`, `bn_output`) and deeplab2 (`batch_norm_similarity`,
`batch_norm_retrieved_output`) do. Those normalisations sit between the
similarity and the softmax and between the softmax weights and the output,
so the layer cannot call a fused attention kernel (e.g.
`jax.nn.dot_product_attention`, which goes from q, k, v to the output without
exposing the logits): it is written with einsums, the (L, L) similarity of
every head materialised. A local span is the same computation with a band
mask: masked pairs are left out of the softmax and of the similarity
normalisation's statistics. That gives the paper's windowed result at O(L^2)
memory per column; a blocked layout would save memory only where L is several
times m (Mapillary's 2177-pixel crops), which segjax does not target.

Departures: batch norms use segjax's (PyTorch's) momentum 0.9 / epsilon 1e-5
where deeplab2 uses Keras' 0.99 / 1e-3; the initialisation follows the
official PyTorch code (projection N(0, 1/C_in), encodings N(0, 1/d_v)).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from segjax.models import layers

def relative_offsets(length: int, radius: int) -> np.ndarray:
    """(L, L) int32 table indices of key offsets o - p, clipped to [-R, R] and shifted by R."""
    positions = np.arange(length)
    offsets = positions[None, :] - positions[:, None]
    return (np.clip(offsets, -radius, radius) + radius).astype(np.int32)


def band_mask(length: int, span: int | None) -> np.ndarray | None:
    """(L, L) True where key o lies within span // 2 of query p; None for a global span."""
    if span is None:
        return None
    positions = np.arange(length)
    return np.abs(positions[None, :] - positions[:, None]) <= span // 2


def _check(span: int | None, axis: int, features: int, query_features: int, heads: int):
    if axis not in (1, 2):
        raise ValueError(f"AxialAttention: axis must be 1 (height) or 2 (width) of (N, H, W, C), "
                         f"got {axis}")
    if span is not None and (span < 1 or span % 2 == 0):
        raise ValueError(f"AxialAttention: span must be a positive odd window length or None "
                         f"(global), got {span}")
    for name, depth in (("features", features), ("query_features", query_features)):
        if depth % heads:
            raise ValueError(f"AxialAttention: {name}={depth} is not divisible by "
                             f"num_heads={heads}")


class AxialAttention(nn.Module):
    """Multi-head position-sensitive self-attention along `axis` of an (N, H, W, C) input.

    `features` is the value depth (the output's channels); queries and keys
    have `query_features` channels (default features // 2). Returns
    (N, H, W, features).
    """

    features: int
    axis: int = 1
    num_heads: int = 8
    span: int | None = None
    max_length: int | None = None
    query_features: int | None = None
    dtype: Any = None
    norm_momentum: float = 0.9
    norm_epsilon: float = 1e-5

    def _norm(self, feature_axes, name):
        return nn.BatchNorm(axis=feature_axes, momentum=self.norm_momentum,
                            epsilon=self.norm_epsilon, dtype=jnp.float32, name=name)

    def _radius(self, length: int) -> int:
        """R of the relative tables: from the stored table, the span, max_length or `length`."""
        if self.has_variable("params", "query_rpe"):
            return (self.get_variable("params", "query_rpe").shape[0] - 1) // 2
        if self.span is not None:
            return self.span // 2
        return (self.max_length or length) - 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        heads = self.num_heads
        query_features = self.query_features or self.features // 2
        _check(self.span, self.axis, self.features, query_features, heads)
        if x.ndim != 4:
            raise ValueError(f"AxialAttention: expected (N, H, W, C) input, got {x.shape}")
        dtype = self.dtype or x.dtype
        query_depth, value_depth = query_features // heads, self.features // heads

        qkv = layers.Conv(2 * query_features + self.features, 1, padding=0, use_bias=False,
                          dtype=dtype, kernel_init=nn.initializers.normal(x.shape[-1] ** -0.5),
                          name="qkv")(x)
        qkv = self._norm(-1, "qkv_bn")(qkv, use_running_average=not train).astype(dtype)
        columns = jnp.moveaxis(qkv, self.axis, 2)            # (N, other, L, C)
        batch_shape, length = columns.shape[:2], columns.shape[2]
        columns = columns.reshape(-1, length, columns.shape[-1])
        q, k, v = jnp.split(columns, [query_features, 2 * query_features], axis=-1)
        q = q.reshape(-1, length, heads, query_depth)
        k = k.reshape(-1, length, heads, query_depth)
        v = v.reshape(-1, length, heads, value_depth)

        radius = self._radius(length)
        index = relative_offsets(length, radius)
        tables = {name: self.param(name, nn.initializers.normal(value_depth ** -0.5),
                                   (2 * radius + 1, depth))
                  for name, depth in (("query_rpe", query_depth), ("key_rpe", query_depth),
                                      ("value_rpe", value_depth))}
        r_q, r_k, r_v = (tables[n].astype(dtype)[index] for n in
                         ("query_rpe", "key_rpe", "value_rpe"))  # (L, L, d): r_{o - p}

        similarity = jnp.stack([jnp.einsum("bphd,bohd->bhpo", q, k),
                                jnp.einsum("bphd,pod->bhpo", q, r_q),
                                jnp.einsum("bohd,pod->bhpo", k, r_k)])
        mask = band_mask(length, self.span)
        similarity = self._norm((0, 2), "similarity_bn")(
            similarity, use_running_average=not train,
            mask=None if mask is None else jnp.broadcast_to(mask, similarity.shape))
        logits = jnp.sum(similarity, axis=0)
        if mask is not None:
            logits = jnp.where(mask, logits, -jnp.inf)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dtype)

        retrieved = jnp.stack([jnp.einsum("bhpo,bohd->bphd", weights, v),
                               jnp.einsum("bhpo,pod->bphd", weights, r_v)])
        retrieved = self._norm((0, 3, 4), "output_bn")(retrieved, use_running_average=not train)
        out = jnp.sum(retrieved, axis=0).astype(dtype)
        out = out.reshape(*batch_shape, length, self.features)
        return jnp.moveaxis(out, 2, self.axis)
