"""Resizing and cropping the spatial axes of channels-last batches (2D and 3D).

`resize` matches PyTorch's `F.interpolate` ('bilinear'/'trilinear' with
either `align_corners`, and 'nearest'), so converted models keep their
outputs; `center_crop` is the U-Net paper's crop of a skip connection.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def _linear_align_corners(x: jax.Array, axis: int, size: int) -> jax.Array:
    """1-D linear interpolation along `axis` with align_corners=True sampling."""
    n = x.shape[axis]
    if n == size:
        return x
    if size == 1 or n == 1:
        return jnp.take(x, jnp.zeros((size,), jnp.int32), axis=axis)
    coords = jnp.arange(size, dtype=jnp.float32) * ((n - 1) / (size - 1))
    lo = jnp.clip(jnp.floor(coords).astype(jnp.int32), 0, n - 2)
    frac = (coords - lo).astype(x.dtype)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, lo + 1, axis=axis) * frac


def resize(x: jax.Array, size: Sequence[int], method: str = "bilinear",
           align_corners: bool = False) -> jax.Array:
    """Resizes the spatial axes of a channels-last batch to `size`.

    'bilinear' (also trilinear for 3D) with align_corners=False matches
    PyTorch's `F.interpolate(..., align_corners=False)` (half-pixel centres, no
    antialiasing); align_corners=True matches PyTorch's and TensorFlow 1's
    `align_corners=True`; 'nearest' matches PyTorch's 'nearest'.
    """
    spatial = tuple(x.shape[1:-1])
    size = tuple(int(s) for s in size)
    if len(size) != len(spatial):
        raise ValueError(f"resize: size {size} has {len(size)} axes, input has {len(spatial)}")
    if size == spatial:
        return x
    if method == "nearest":
        for axis, (n, m) in enumerate(zip(spatial, size), start=1):
            index = jnp.floor(jnp.arange(m) * (n / m)).astype(jnp.int32)
            x = jnp.take(x, jnp.minimum(index, n - 1), axis=axis)
        return x
    if method not in ("bilinear", "linear", "trilinear"):
        raise ValueError(f"resize: unknown method {method!r}; valid: 'bilinear', 'nearest'")
    if align_corners:
        for axis, m in enumerate(size, start=1):
            x = _linear_align_corners(x, axis, m)
        return x
    if all(m % n == 0 for n, m in zip(spatial, size)):
        for axis, (n, m) in enumerate(zip(spatial, size), start=1):
            x = _upsample_half_pixel(x, axis, m // n)
        return x
    shape = (x.shape[0],) + size + (x.shape[-1],)
    return jax.image.resize(x, shape, method="linear", antialias=False).astype(x.dtype)


def _upsample_half_pixel(x: jax.Array, axis: int, factor: int) -> jax.Array:
    """Linear upsampling by an integer factor along `axis`, half-pixel centres, edges clamped.

    Output pixel factor * i + r samples the input at i + t_r, t_r = (r + 0.5) / factor - 0.5,
    a fixed mix of x[i] and its neighbour (x[i - 1] for t_r < 0, x[i + 1] otherwise; the
    edge pixel repeats past the ends, as PyTorch clamps): elementwise work and an
    interleaving reshape, where `jax.image.resize` computes the same values as dense
    (m x n) matmuls per axis (docs/transformers.md has the timings).
    """
    if factor == 1:
        return x
    n = x.shape[axis]
    take = lambda start, stop: jax.lax.slice_in_dim(x, start, stop, axis=axis)
    previous = jnp.concatenate([take(0, 1), take(0, n - 1)], axis=axis)
    following = jnp.concatenate([take(1, n), take(n - 1, n)], axis=axis)
    phases = []
    for r in range(factor):
        t = (r + 0.5) / factor - 0.5
        phases.append((-t) * previous + (1 + t) * x if t < 0 else (1 - t) * x + t * following)
    y = jnp.stack(phases, axis=axis + 1).astype(x.dtype)
    return y.reshape(x.shape[:axis] + (n * factor,) + x.shape[axis + 1:])


def center_crop(x: jax.Array, size: Sequence[int], spatial_start: int = 1) -> jax.Array:
    """Crops the centre `size` of the spatial axes starting at `spatial_start`.

    Odd differences put the extra pixel at the end, as the U-Net paper's crop.
    """
    slices = [slice(None)] * x.ndim
    for offset, target in enumerate(size):
        axis = spatial_start + offset
        extra = x.shape[axis] - target
        if extra < 0:
            raise ValueError(f"center_crop: axis {axis} has {x.shape[axis]} < {target}")
        slices[axis] = slice(extra // 2, extra // 2 + target)
    return x[tuple(slices)]
