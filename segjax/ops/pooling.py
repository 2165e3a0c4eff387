"""Pooling over the spatial axes of channels-last batches (2D and 3D).

`max_pool`, `avg_pool` (PyTorch's padding conventions), `global_avg_pool` and
PyTorch's adaptive average pooling (`adaptive_avg_pool`, `adaptive_bins`).
Non-overlapping max pooling (U-Net's and VGG's 2x2/2) is a reshape and a max
with its own gradient rule, because `reduce_window`'s gradient materialises
index arrays of the input's size (docs/conv.md, decision 10).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import pooling as flax_pooling

from segjax.ops.conv import per_axis


def _pool_padding(padding, rank: int):
    if isinstance(padding, str):
        return padding
    return [(p, p) for p in per_axis(padding, rank, "padding")]


def max_pool(x: jax.Array, window: int = 2, strides: int | None = None, padding="VALID"):
    """Max pooling over all spatial axes (2D or 3D); int padding pads with -inf.

    Non-overlapping VALID pooling (window == strides) is a reshape and a max
    whose gradient goes, as in PyTorch, to the first maximum of each window
    (row-major), computed from the input and output the network holds anyway.
    """
    rank = x.ndim - 2
    window = per_axis(window, rank, "window")
    strides = per_axis(window if strides is None else strides, rank, "strides")
    if window == strides and padding == "VALID":
        return _non_overlapping_max_pool(x, window)
    return flax_pooling.max_pool(x, window, strides, _pool_padding(padding, rank))


def _non_overlapping_max_pool(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    spatial = x.shape[1:-1]
    kept = tuple(n - n % k for n, k in zip(spatial, window))
    if kept != spatial:  # VALID drops the trailing rows that do not fill a window
        x = x[(slice(None),) + tuple(slice(0, n) for n in kept) + (slice(None),)]
    split = [x.shape[0]]
    for n, k in zip(kept, window):
        split += [n // k, k]
    return _window_max(x.reshape(split + [x.shape[-1]]))


def _window_axes(split: jax.Array) -> tuple[int, ...]:
    """The window axes of (N, n1, k1, n2, k2, ..., C)."""
    return tuple(range(2, split.ndim - 1, 2))


@jax.custom_vjp
def _window_max(split: jax.Array) -> jax.Array:
    """Max over the window axes of (N, n1, k1, n2, k2, ..., C) -> (N, n1, n2, ..., C)."""
    return jnp.max(split, axis=_window_axes(split))


def _window_max_forward(split):
    pooled = _window_max(split)
    return pooled, (split, pooled)


def _window_max_backward(residuals, d_pooled):
    split, pooled = residuals
    axes = _window_axes(split)
    taken = jnp.zeros(pooled.shape, bool)
    pieces = {}
    for offset in itertools.product(*(range(split.shape[a]) for a in axes)):
        index = [slice(None)] * split.ndim
        for axis, position in zip(axes, offset):
            index[axis] = position
        is_max = split[tuple(index)] == pooled
        pieces[offset] = jnp.where(is_max & ~taken, d_pooled, jnp.zeros_like(d_pooled))
        taken = taken | is_max
    return (_assemble_windows(pieces, tuple(split.shape[a] for a in axes)),)


def _assemble_windows(pieces: dict, window: tuple[int, ...], prefix: tuple[int, ...] = ()):
    """Stacks per-offset (N, n1, n2, ..., C) gradients back into the split layout."""
    depth = len(prefix)
    if depth == len(window):
        return pieces[prefix]
    parts = [_assemble_windows(pieces, window, prefix + (k,)) for k in range(window[depth])]
    return jnp.stack(parts, axis=2 + depth)


_window_max.defvjp(_window_max_forward, _window_max_backward)


def avg_pool(x: jax.Array, window: int = 2, strides: int | None = None, padding="VALID",
             count_include_pad: bool = False):
    """Average pooling over all spatial axes; by default padding is excluded from the
    count (`count_include_pad=True` is PyTorch's `AvgPool` default)."""
    rank = x.ndim - 2
    strides = window if strides is None else strides
    return flax_pooling.avg_pool(x, per_axis(window, rank, "window"),
                                 per_axis(strides, rank, "strides"),
                                 _pool_padding(padding, rank),
                                 count_include_pad=count_include_pad)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over all spatial axes, keeping them as size-1 axes."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=True)


def adaptive_bins(size: int, bins: int) -> np.ndarray:
    """(bins, size) averaging matrix of PyTorch's adaptive average pooling along one axis.

    Bin k covers [floor(k * size / bins), ceil((k + 1) * size / bins)): bins
    overlap when `size` is not a multiple of `bins`, and a bin wider than
    the input repeats pixels, exactly as `nn.AdaptiveAvgPool2d`.
    """
    matrix = np.zeros((bins, size), np.float32)
    for k in range(bins):
        start, end = (k * size) // bins, -(-((k + 1) * size) // bins)
        matrix[k, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
    """PyTorch's `AdaptiveAvgPool{2,3}d` over the spatial axes of a channels-last batch.

    A bin is a box, so its mean is the product of one averaging matrix per
    axis (`adaptive_bins`), applied axis by axis as small matmuls.
    """
    rank = x.ndim - 2
    for axis, bins in enumerate(per_axis(output_size, rank, "output_size"), start=1):
        matrix = jnp.asarray(adaptive_bins(x.shape[axis], bins), x.dtype)
        x = jnp.moveaxis(jnp.tensordot(matrix, x, axes=[[1], [axis]],
                                       precision=jax.lax.Precision.HIGHEST), 0, axis)
    return x
