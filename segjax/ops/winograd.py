"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). The
output is computed in 2x2 tiles from overlapping 4x4 input tiles:

    Y = A^T [ (G g G^T) * (B^T d B) ] A

(`*` elementwise over the 16 tile positions, a sum over input channels), so
the work is 16 matmuls of (tiles, C_in) x (C_in, C_out) where the direct
convolution does 36. The input and output transforms are additions over
strided slices, which XLA fuses into one pass each.

On CPU the matmuls are where the time goes once channels are wide, so this
wins for wide layers (the U-Net's 256..1024-channel levels and most decoders)
and loses for narrow ones, where the transforms' memory traffic (the
transformed input is 4x the input) dominates: `segjax.ops.conv_cpu` uses it
above a channel threshold (measurements in docs/conv.md, decision 8). In float32
the result differs from the direct convolution by rounding only (the
transforms' coefficients are 0, +-1 and +-1/2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# The three transforms are written out as additions (B^T, A^T) and halvings
# (G) over slices: as matrices they would be tiny dot products that XLA:CPU
# runs far slower than one fused elementwise pass.


def _input_transform_1d(x: jax.Array, axis: int, tiles: int) -> list[jax.Array]:
    """B^T applied along `axis`: 4 arrays of `tiles` rows from rows 2t..2t+3."""
    rows = [lax.slice_in_dim(x, a, a + 2 * tiles - 1, stride=2, axis=axis) for a in range(4)]
    return [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]


def _output_transform_1d(m: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """A^T applied to the 4 transformed positions: the 2 outputs of a tile."""
    return m[0] + m[1] + m[2], m[1] - m[2] - m[3]


def _kernel_transform_1d(g: jax.Array, axis: int) -> jax.Array:
    """G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] applied along `axis`."""
    g0, g1, g2 = (lax.index_in_dim(g, i, axis) for i in range(3))
    return jnp.concatenate([g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2], axis=axis)


def transform_kernel(kernel: jax.Array) -> jax.Array:
    """G g G^T for a (3, 3, C_in, C_out) kernel: (16, C_in, C_out), position-major."""
    transformed = _kernel_transform_1d(_kernel_transform_1d(kernel, 0), 1)
    return transformed.reshape((16,) + kernel.shape[2:])


def conv3x3(x: jax.Array, kernel: jax.Array, padding, precision=None) -> jax.Array:
    """The stride-1, undilated 3x3 convolution of NHWC `x` with HWIO `kernel`.

    `padding` is ((top, bottom), (left, right)), non-negative; the result
    equals `lax.conv_general_dilated(x, kernel, (1, 1), padding, ...)`.
    """
    n, h, w, c_in = x.shape
    c_out = kernel.shape[-1]
    (top, bottom), (left, right) = padding
    out_h, out_w = h + top + bottom - 2, w + left + right - 2
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    # Pad to whole tiles: an odd output size gets one extra (discarded) row.
    xp = jnp.pad(x, ((0, 0), (top, 2 * tiles_h + 2 - h - top),
                     (left, 2 * tiles_w + 2 - w - left), (0, 0)))
    by_rows = _input_transform_1d(xp, 1, tiles_h)
    transformed = jnp.stack([col for row in by_rows
                             for col in _input_transform_1d(row, 2, tiles_w)])
    transformed = transformed.reshape(16, n * tiles_h * tiles_w, c_in)
    products = lax.dot_general(transformed, transform_kernel(kernel),
                               (((2,), (1,)), ((0,), (0,))), precision=precision)
    products = products.reshape(4, 4, n, tiles_h, tiles_w, c_out)
    top_row, bottom_row = _output_transform_1d([products[a] for a in range(4)])
    outputs = [_output_transform_1d([row[b] for b in range(4)]) for row in (top_row, bottom_row)]
    # outputs[i][j]: (n, tiles_h, tiles_w, c_out) = y[2t + i, 2u + j]
    y = jnp.stack([jnp.stack(outputs[0], axis=3), jnp.stack(outputs[1], axis=3)], axis=2)
    y = y.reshape(n, 2 * tiles_h, 2 * tiles_w, c_out)
    return y[:, :out_h, :out_w]
