"""Exact Euclidean distance transforms in JAX (jit-able, any spatial rank, voxel spacing).

The boundary loss (`segjax.losses.boundary_loss`, Kervadec et al. 2019)
weights each pixel's probability by its signed distance to the label's
boundary, inside the training step, so the distances are computed on the
device rather than by a host callback (which would gather a sharded batch
onto one device). The squared distance is separable (Saito and Toriwaki
1994): along each axis in turn,

    d2[i] = min_j ( d2_previous[j] + (spacing * (i - j)) ** 2 )

which is exact after the last axis. Each axis pass takes the minimum over all
j of a line of length L at once, O(L) work per pixel, on lines processed in
chunks of at most `CHUNK_ELEMENTS` (line x L) values so that memory stays
bounded for large crops.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

CHUNK_ELEMENTS = 1 << 24


def _axis_pass(d2: jax.Array, axis: int, spacing: float) -> jax.Array:
    """One separable pass: the lower envelope of parabolas along `axis`."""
    moved = jnp.moveaxis(d2, axis, -1)
    length = moved.shape[-1]
    lines = moved.reshape(-1, length)
    offsets = jnp.arange(length, dtype=jnp.float32)
    parabola = (spacing * (offsets[:, None] - offsets[None, :])) ** 2   # (i, j)

    def envelope(line):
        return jnp.min(line[None, :] + parabola, axis=-1)

    batch = max(1, CHUNK_ELEMENTS // (length * length))
    out = jax.lax.map(envelope, lines, batch_size=min(batch, lines.shape[0]))
    return jnp.moveaxis(out.reshape(moved.shape), -1, axis)


def squared_distance_to(mask: jax.Array, spacing: Sequence[float] | None = None,
                        *, spatial_axes: int | None = None) -> jax.Array:
    """float32 squared distance of every element to the nearest True element of `mask`.

    `mask` is (..., *spatial) with `spatial_axes` trailing spatial axes (default:
    all); leading axes are independent maps. A map with no True element gets
    +inf everywhere. `spacing` gives one physical length per spatial axis.
    """
    mask = jnp.asarray(mask, bool)
    rank = mask.ndim if spatial_axes is None else int(spatial_axes)
    spacing = tuple(float(s) for s in (spacing or (1.0,) * rank))
    if len(spacing) != rank:
        raise ValueError(f"squared_distance_to: {len(spacing)} spacings for {rank} spatial axes")
    # A finite stand-in for infinity keeps the envelope's sums finite; larger than any
    # squared distance inside the map.
    far = float(sum((s * n) ** 2 for s, n in zip(spacing, mask.shape[-rank:]))) + 1.0
    d2 = jnp.where(mask, 0.0, far).astype(jnp.float32)
    for offset, step in enumerate(spacing):
        d2 = _axis_pass(d2, mask.ndim - rank + offset, step)
    return jnp.where(d2 >= far, jnp.inf, d2)


def signed_distance(mask: jax.Array, spacing: Sequence[float] | None = None,
                    *, spatial_axes: int | None = None) -> jax.Array:
    """Kervadec et al.'s signed distance map of a mask: outside, the distance to the mask;
    inside, minus (the distance to the outside - 1). Zero for a map that is empty or full
    (it has no boundary). Distances in units of `spacing`."""
    mask = jnp.asarray(mask, bool)
    outside = jnp.sqrt(squared_distance_to(mask, spacing, spatial_axes=spatial_axes))
    inside = jnp.sqrt(squared_distance_to(~mask, spacing, spatial_axes=spatial_axes))
    signed = jnp.where(mask, -(inside - 1.0), outside)
    return jnp.where(jnp.isfinite(outside) & jnp.isfinite(inside), signed, 0.0)
