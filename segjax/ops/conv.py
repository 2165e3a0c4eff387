"""The one convolution every segjax layer calls.

`conv(x, kernel, ...)` is a channels-last N-dimensional convolution (2D: NHWC
with an HWIO kernel; 3D: NDHWC with a DHWIO kernel) with strides, explicit,
VALID or SAME padding, input (lhs) dilation for transposed convolutions,
kernel (rhs) dilation for atrous convolutions and feature groups (depthwise
when groups == input channels).

Every model reaches XLA's convolution only through this function, so the
formulation can be chosen in one place (see `implementation`). "native" is
`jax.lax.conv_general_dilated`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Padding = str | Sequence[tuple[int, int]]

_IMPLEMENTATIONS = ("auto", "native")
_default_implementation = "auto"


def set_default_implementation(name: str) -> None:
    """Sets the formulation used when a layer does not name one (config.model.conv_impl)."""
    global _default_implementation
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"conv implementation {name!r} is not one of {_IMPLEMENTATIONS}")
    _default_implementation = name


def implementation() -> str:
    return _default_implementation


def dimension_numbers(rank: int) -> tuple[str, str, str]:
    """Channels-last dimension numbers for a `rank`-D convolution."""
    spatial = "DHW"[-rank:] if rank <= 3 else None
    if spatial is None:
        raise ValueError(f"conv supports 1, 2 or 3 spatial dimensions, got {rank}")
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def normalize_padding(padding, rank: int, kernel_shape, rhs_dilation) -> Padding:
    """Turns int / per-axis int / (lo, hi) pairs / 'SAME' / 'VALID' into lax form."""
    if isinstance(padding, str):
        upper = padding.upper()
        if upper not in ("SAME", "VALID"):
            raise ValueError(f"padding {padding!r}: expected 'SAME', 'VALID', an int or pairs")
        return upper
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    pads = list(padding)
    if len(pads) != rank:
        raise ValueError(f"padding {padding!r}: expected {rank} entries, one per spatial axis")
    return [(p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in pads]


def conv(x: jax.Array, kernel: jax.Array, *, strides=1, padding: Padding = "SAME",
         lhs_dilation=1, rhs_dilation=1, feature_group_count: int = 1,
         precision=None, impl: str | None = None) -> jax.Array:
    """Channels-last convolution of `x` (N, *spatial, C_in) with `kernel` (*k, C_in/g, C_out)."""
    rank = x.ndim - 2
    if kernel.ndim != rank + 2:
        raise ValueError(f"conv: kernel rank {kernel.ndim} does not match input rank {x.ndim}")
    as_tuple = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)
    strides, lhs_dilation, rhs_dilation = map(as_tuple, (strides, lhs_dilation, rhs_dilation))
    padding = normalize_padding(padding, rank, kernel.shape[:rank], rhs_dilation)
    impl = impl or _default_implementation
    if impl not in _IMPLEMENTATIONS:
        raise ValueError(f"conv implementation {impl!r} is not one of {_IMPLEMENTATIONS}")
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers(rank),
        feature_group_count=feature_group_count, precision=precision)


def conv_transpose(x: jax.Array, kernel: jax.Array, *, strides=2, padding=0,
                   output_padding=0, rhs_dilation=1, feature_group_count: int = 1,
                   impl: str | None = None) -> jax.Array:
    """Transposed convolution with PyTorch's semantics (`ConvTranspose{2,3}d`).

    `kernel` is (*k, C_in, C_out) and is the PyTorch weight (C_in, C_out, *k) with
    its axes moved; output size = (n - 1) * stride - 2 * padding
    + dilation * (k - 1) + output_padding + 1. Computed as a stride-1 convolution
    of the stride-dilated input with the spatially flipped kernel.
    """
    rank = x.ndim - 2
    as_tuple = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)
    strides, padding, output_padding, rhs_dilation = map(
        as_tuple, (strides, padding, output_padding, rhs_dilation))
    if feature_group_count != 1:
        raise NotImplementedError("grouped transposed convolution")
    kernel_size = kernel.shape[:rank]
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
            for k, p, op, d in zip(kernel_size, padding, output_padding, rhs_dilation)]
    flipped = jnp.flip(kernel, axis=tuple(range(rank)))
    return conv(x, flipped, strides=1, padding=pads, lhs_dilation=strides,
                rhs_dilation=rhs_dilation, impl=impl)
