"""The one convolution every segjax layer calls, with a formulation per backend.

`conv(x, kernel, ...)` is a channels-last N-dimensional convolution (2D: NHWC
with an HWIO kernel; 3D: NDHWC with a DHWIO kernel) with strides, explicit,
VALID or SAME padding, input (lhs) dilation for transposed convolutions,
kernel (rhs) dilation for atrous convolutions and feature groups (depthwise
when groups == input channels). Every model reaches a convolution only through
this module, so the formulation is chosen here, in one place.

Implementations (`impl=`, `set_default_implementation`, `config.runtime.conv_impl`):

- "native": `jax.lax.conv_general_dilated`, differentiated by JAX's own rules.
  XLA's GPU and TPU convolutions (cuDNN, the TPU's MXU) are fast in all three
  directions, so "auto" picks this on every backend but CPU.
- "cpu": the same mathematics with each direction written the way XLA:CPU runs
  it fastest (see segjax/ops/conv_cpu.py, and docs/conv.md for the
  measurements): forward and input gradient as XLA convolutions whose padding
  is never all zero (XLA:CPU runs an unpadded convolution several times slower
  than a padded one, so VALID becomes padded-then-cropped) and 1x1 convolutions
  as matmuls; the weight gradient as matmuls (blocks of im2col rows for narrow
  layers, one per kernel offset for wide ones, XLA:CPU's own weight-gradient
  convolution being slower); 3x3 layers with 256+ channels by Winograd
  F(2x2, 3x3) in all three directions; transposed convolutions whose kernel equals
  their stride (U-Net's up-convolutions) as a matmul and a depth-to-space
  reshape. A `jax.custom_vjp` ties the three directions together; the
  residuals are the input and the kernel, as for the native convolution.
- "auto" (default): "cpu" when the backend JAX computes on
  (`jax.default_backend()`, read when the function is traced) is the CPU,
  otherwise "native".

Low-precision inputs (bfloat16, float16) accumulate in float32
(`preferred_element_type`) in the matmul paths and return the input dtype.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from segjax.ops import conv_cpu

Padding = str | Sequence[tuple[int, int]]

IMPLEMENTATIONS = ("auto", "native", "cpu")
_default_implementation = "auto"


def set_default_implementation(name: str) -> None:
    """Sets the formulation used when a layer does not name one (config.runtime.conv_impl)."""
    global _default_implementation
    _check_implementation(name, "set_default_implementation")
    _default_implementation = name


def implementation() -> str:
    """The default formulation ('auto' unless set)."""
    return _default_implementation


def resolve_implementation(impl: str | None = None) -> str:
    """The formulation a call with `impl` runs now: 'native' or 'cpu'."""
    impl = impl or _default_implementation
    _check_implementation(impl, "conv")
    if impl == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "native"
    return impl


def _check_implementation(name, where: str) -> None:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"{where}: conv implementation {name!r} is not one of "
                         f"{IMPLEMENTATIONS} (config.runtime.conv_impl)")


def dimension_numbers(rank: int) -> tuple[str, str, str]:
    """Channels-last dimension numbers for a `rank`-D convolution."""
    spatial = "DHW"[-rank:] if 1 <= rank <= 3 else None
    if spatial is None:
        raise ValueError(f"conv supports 1, 2 or 3 spatial dimensions, got {rank}")
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def normalize_padding(padding, rank: int, kernel_shape=None, rhs_dilation=None) -> Padding:
    """Turns int / per-axis int / (lo, hi) pairs / 'SAME' / 'VALID' into lax form."""
    del kernel_shape, rhs_dilation  # 'SAME' is resolved by `explicit_padding`
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


def explicit_padding(padding, in_shape, kernel_shape, strides, lhs_dilation,
                     rhs_dilation) -> tuple[tuple[int, int], ...]:
    """(lo, hi) per spatial axis, resolving 'SAME'/'VALID' as lax does."""
    rank = len(in_shape)
    padding = normalize_padding(padding, rank)
    if isinstance(padding, str):
        dilated_in = [(n - 1) * d + 1 for n, d in zip(in_shape, lhs_dilation)]
        dilated_k = [(k - 1) * d + 1 for k, d in zip(kernel_shape, rhs_dilation)]
        padding = jax.lax.padtype_to_pads(dilated_in, dilated_k, strides, padding)
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def per_axis(value, rank: int, field: str) -> tuple[int, ...]:
    """An int (the same on every spatial axis) or one int per axis, as a `rank`-tuple."""
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"{field}={value} needs {rank} entries, one per spatial axis")
    return value


def standardize_kernel(kernel: jax.Array, epsilon: float) -> jax.Array:
    """(kernel - mean) / sqrt(var + epsilon) per output channel (the last axis)."""
    axes = tuple(range(kernel.ndim - 1))
    mean = jnp.mean(kernel, axis=axes, keepdims=True)
    var = jnp.var(kernel, axis=axes, keepdims=True)
    return (kernel - mean) * jax.lax.rsqrt(var + epsilon)


def conv(x: jax.Array, kernel: jax.Array, *, strides=1, padding: Padding = "SAME",
         lhs_dilation=1, rhs_dilation=1, feature_group_count: int = 1,
         precision=None, impl: str | None = None) -> jax.Array:
    """Channels-last convolution of `x` (N, *spatial, C_in) with `kernel` (*k, C_in/g, C_out)."""
    rank = x.ndim - 2
    if kernel.ndim != rank + 2:
        raise ValueError(f"conv: kernel rank {kernel.ndim} does not match input rank {x.ndim}")
    strides = per_axis(strides, rank, "strides")
    lhs_dilation = per_axis(lhs_dilation, rank, "lhs_dilation")
    rhs_dilation = per_axis(rhs_dilation, rank, "rhs_dilation")
    if x.shape[-1] != kernel.shape[-2] * feature_group_count:
        raise ValueError(f"conv: input has {x.shape[-1]} channels, kernel {kernel.shape} with "
                         f"feature_group_count={feature_group_count} expects "
                         f"{kernel.shape[-2] * feature_group_count}")
    pads = explicit_padding(padding, x.shape[1:-1], kernel.shape[:rank], strides,
                            lhs_dilation, rhs_dilation)
    if resolve_implementation(impl) == "native":
        return jax.lax.conv_general_dilated(
            x, kernel, window_strides=strides, padding=pads, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers(rank),
            feature_group_count=feature_group_count, precision=precision)
    spec = conv_cpu.ConvSpec(strides, pads, lhs_dilation, rhs_dilation, feature_group_count,
                             precision)
    return conv_cpu.conv(x, kernel, spec)


def conv_transpose(x: jax.Array, kernel: jax.Array, *, strides=2, padding=0,
                   output_padding=0, rhs_dilation=1, feature_group_count: int = 1,
                   impl: str | None = None) -> jax.Array:
    """Transposed convolution with PyTorch's semantics (`ConvTranspose{2,3}d`).

    `kernel` is (*k, C_in, C_out) and is the PyTorch weight (C_in, C_out, *k) with
    its axes moved; output size = (n - 1) * stride - 2 * padding
    + dilation * (k - 1) + output_padding + 1. Computed as a stride-1 convolution
    of the stride-dilated input with the spatially flipped kernel, or, on the
    "cpu" formulation when the kernel equals the stride (no overlap, no
    padding), as one matmul and a depth-to-space reshape.
    """
    rank = x.ndim - 2
    strides = per_axis(strides, rank, "strides")
    padding = per_axis(padding, rank, "padding")
    output_padding = per_axis(output_padding, rank, "output_padding")
    rhs_dilation = per_axis(rhs_dilation, rank, "rhs_dilation")
    if feature_group_count != 1:
        raise NotImplementedError("grouped transposed convolution")
    kernel_size = kernel.shape[:rank]
    if (resolve_implementation(impl) == "cpu" and tuple(kernel_size) == strides
            and not any(padding) and not any(output_padding) and set(rhs_dilation) == {1}):
            return conv_cpu.patch_transpose(x, kernel)
    pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
            for k, p, op, d in zip(kernel_size, padding, output_padding, rhs_dilation)]
    flipped = jnp.flip(kernel, axis=tuple(range(rank)))
    return conv(x, flipped, strides=1, padding=pads, lhs_dilation=strides,
                rhs_dilation=rhs_dilation, impl=impl)
