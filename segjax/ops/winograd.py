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

The 16 tile positions stay 16 separate arrays end to end (16 matmuls, not one
batched matmul over a stacked array): XLA:CPU runs a fused transform that
concatenates its results several times slower than the same arithmetic written
to separate outputs (docs/conv.md, decision 8).

The weight gradient follows from the same formula by linearity in g (see
`weight_gradient3x3`): 16 matmuls (tiles, C_in)^T (tiles, C_out) and
transforms of the input and the output gradient, where the direct weight
gradient does 9 matmuls over 4x as many pixels.

The input gradient of a convolution is a convolution with the kernel flipped
and its channels swapped. `kernel_transposed=True` computes that without
building the swapped kernel: flipping a 3x3 kernel swaps transformed
positions 0 and 3 along each axis (G's first and last rows), and the swap of
channels is the matmul's contraction over the kernel's last axis instead of
its first (a transposed-operand matmul, no copy), where transposing the kernel
inside the transform was a large part of each wide layer's time (docs/conv.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# Elements of one block's transformed operands in `weight_gradient3x3` (128 MB
# in float32): whole layers at U-Net sizes, where smaller blocks made the step
# slower (docs/conv.md, decision 22); a bound for larger inputs.
WEIGHT_GRADIENT_BLOCK_ELEMENTS = 2 ** 25

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


def _kernel_transform_1d(g: list[jax.Array]) -> list[jax.Array]:
    """G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] applied to 3 taps."""
    return [g[0], (g[0] + g[1] + g[2]) * 0.5, (g[0] - g[1] + g[2]) * 0.5, g[2]]


def kernel_positions(kernel: jax.Array) -> list[jax.Array]:
    """G g G^T for a (3, 3, C_in, C_out) kernel: 16 (C_in, C_out) arrays, row-major positions."""
    by_column = [_kernel_transform_1d([kernel[i, j] for i in range(3)]) for j in range(3)]
    return [position
            for a in range(4)
            for position in _kernel_transform_1d([by_column[j][a] for j in range(3)])]


def _flipped_positions(positions: list[jax.Array]) -> list[jax.Array]:
    """The transform of the spatially flipped kernel: positions 0 and 3 swap along each axis."""
    flip = (3, 1, 2, 0)
    return [positions[4 * flip[a] + flip[b]] for a in range(4) for b in range(4)]


def _input_positions(x: jax.Array, tiles_h: int, tiles_w: int) -> list[jax.Array]:
    """B^T d B for every 4x4 tile of the (tile-padded) input: 16 (N, tiles_h, tiles_w, C)."""
    return [position
            for row in _input_transform_1d(x, 1, tiles_h)
            for position in _input_transform_1d(row, 2, tiles_w)]


def _assemble_output(products: list[jax.Array]) -> jax.Array:
    """A^T m A per tile from the 16 (N, tiles_h, tiles_w, C) products: (N, 2 th, 2 tw, C)."""
    n, tiles_h, tiles_w, c = products[0].shape
    by_column = [_output_transform_1d([products[4 * a + b] for a in range(4)])
                 for b in range(4)]
    # outputs[i][j]: (n, tiles_h, tiles_w, c) = y[2t + i, 2u + j]
    outputs = [_output_transform_1d([by_column[b][i] for b in range(4)]) for i in range(2)]
    y = jnp.stack([jnp.stack(outputs[0], axis=3), jnp.stack(outputs[1], axis=3)], axis=2)
    return y.reshape(n, 2 * tiles_h, 2 * tiles_w, c)


def _tile_padded_input(x: jax.Array, padding):
    """x padded by `padding` and on to whole 2x2 output tiles (an odd output size gets one
    extra, discarded row): (padded x, (out_h, out_w), (tiles_h, tiles_w))."""
    _, h, w, _ = x.shape
    (top, bottom), (left, right) = padding
    out_h, out_w = h + top + bottom - 2, w + left + right - 2
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    xp = jnp.pad(x, ((0, 0), (top, 2 * tiles_h + 2 - h - top),
                     (left, 2 * tiles_w + 2 - w - left), (0, 0)))
    return xp, (out_h, out_w), (tiles_h, tiles_w)


def conv3x3(x: jax.Array, kernel: jax.Array, padding, precision=None, *,
            kernel_transposed: bool = False) -> jax.Array:
    """The stride-1, undilated 3x3 convolution of NHWC `x` with HWIO `kernel`.

    `padding` is ((top, bottom), (left, right)), non-negative; the result
    equals `lax.conv_general_dilated(x, kernel, (1, 1), padding, ...)`. With
    `kernel_transposed`, the kernel used is `kernel` flipped spatially with
    its two channel axes swapped (`x` then has `kernel.shape[3]` channels):
    the convolution that computes an input gradient.
    """
    n = x.shape[0]
    xp, (out_h, out_w), (tiles_h, tiles_w) = _tile_padded_input(x, padding)
    weights = kernel_positions(kernel)
    if kernel_transposed:
        weights = _flipped_positions(weights)
        contraction = (((1,), (1,)), ((), ()))
        c_out = kernel.shape[2]
    else:
        contraction = (((1,), (0,)), ((), ()))
        c_out = kernel.shape[3]
    products = [
        lax.dot_general(position.reshape(n * tiles_h * tiles_w, -1), weight, contraction,
                        precision=precision).reshape(n, tiles_h, tiles_w, c_out)
        for position, weight in zip(_input_positions(xp, tiles_h, tiles_w), weights)]
    return _assemble_output(products)[:, :out_h, :out_w]


def _output_gradient_transform_1d(y: jax.Array, axis: int) -> list[jax.Array]:
    """A applied along `axis` (the adjoint of A^T): 4 arrays from the 2 rows of each tile."""
    y0 = lax.slice_in_dim(y, 0, y.shape[axis] - 1, stride=2, axis=axis)
    y1 = lax.slice_in_dim(y, 1, y.shape[axis], stride=2, axis=axis)
    return [y0, y0 + y1, y0 - y1, -y1]


def _kernel_gradient_1d(h: list[jax.Array]) -> list[jax.Array]:
    """G^T applied to the 4 transformed positions: the gradient of the 3 taps."""
    return [h[0] + (h[1] + h[2]) * 0.5, (h[1] - h[2]) * 0.5, (h[1] + h[2]) * 0.5 + h[3]]


def weight_gradient3x3(x: jax.Array, dy: jax.Array, padding, precision=None, *,
                       block_elements=None) -> jax.Array:
    """d(loss)/dkernel of `conv3x3(x, kernel, padding)` given the output gradient `dy`.

    By linearity of Y = A^T [(G g G^T) * (B^T d B)] A in g: dg = G^T [sum over
    tiles and the batch of (B^T d B) * (A dY A^T)] G, one transposed-operand
    matmul (tiles, C_in)^T (tiles, C_out) per tile position: 16 where the
    per-offset weight gradient does 9 over 4x as many pixels (2.25x fewer
    multiplications). `dy` is zero-extended to whole tiles, as the forward
    discards its extra row.

    The transformed operands are 4x the input and output gradient, so they
    are built a block of tile rows at a time (at most `block_elements` of
    them per block) in a `lax.scan` that accumulates the 16 products.
    """
    n, c_in, c_out = x.shape[0], x.shape[-1], dy.shape[-1]
    xp, (out_h, out_w), (tiles_h, tiles_w) = _tile_padded_input(x, padding)
    dyp = jnp.pad(dy, ((0, 0), (0, 2 * tiles_h - out_h), (0, 2 * tiles_w - out_w), (0, 0)))
    row_elements = 16 * n * tiles_w * (c_in + c_out)
    if block_elements is None:
        block_elements = WEIGHT_GRADIENT_BLOCK_ELEMENTS
    rows = int(min(max(block_elements // row_elements, 1), tiles_h))

    def block_products(start, count):
        """The 16 (C_in, C_out) position products of tile rows [start, start + count)."""
        xb = lax.dynamic_slice_in_dim(xp, 2 * start, 2 * count + 2, axis=1)
        dyb = lax.dynamic_slice_in_dim(dyp, 2 * start, 2 * count, axis=1)
        gradient_positions = [position
                              for row in _output_gradient_transform_1d(dyb, 1)
                              for position in _output_gradient_transform_1d(row, 2)]
        pixels = n * count * tiles_w
        return tuple(
            lax.dot_general(u.reshape(pixels, c_in), v.reshape(pixels, c_out),
                            (((0,), (0,)), ((), ())), precision=precision,
                            preferred_element_type=jnp.float32)
            for u, v in zip(_input_positions(xb, count, tiles_w), gradient_positions))

    def accumulate(totals, block):
        products = block_products(block * rows, rows)
        return tuple(t + p for t, p in zip(totals, products)), None

    full_blocks, remainder = divmod(tiles_h, rows)
    totals = block_products(0, rows)
    if full_blocks > 1:
        totals, _ = lax.scan(accumulate, totals, jnp.arange(1, full_blocks))
    if remainder:
        totals = tuple(t + p for t, p in
                       zip(totals, block_products(full_blocks * rows, remainder)))
    by_column = [_kernel_gradient_1d([totals[4 * a + b] for a in range(4)]) for b in range(4)]
    taps = [_kernel_gradient_1d([by_column[b][i] for b in range(4)]) for i in range(3)]
    return jnp.stack([jnp.stack(row) for row in taps]).astype(x.dtype)
