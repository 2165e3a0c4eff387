"""The "cpu" convolution formulation: each direction written the way XLA:CPU runs it fastest.

Each choice below was measured on 2-core AVX-512 CPUs with jax 0.10.2 (the
numbers are in docs/conv.md, reproduced by experiments/bench_conv.py):

- forward: XLA:CPU's convolution with no padding at all (VALID, or an explicit
  (0, 0) everywhere) runs several times slower than the same convolution with padding,
  so an unpadded convolution gets `stride` extra rows of high padding per axis
  and its one extra output row is cropped (~1/H more arithmetic);
- 1x1 convolutions (no padding) are matmuls over the channel axis;
- input gradient: the convolution of the output gradient with the spatially
  flipped, in/out-swapped kernel (stride-dilated when the forward is strided),
  through the same padded forward, so it never hits the unpadded path either;
- weight gradient: for layers with at most 128 input or output channels, a
  scan over blocks of output rows, each the transposed im2col block
  (C_in x taps, pixels) times the output gradient (pixels, C_out), with the
  last spatial axis's taps applied as shifts of the output gradient rather
  than copies of the input when that axis has stride 1; for wider
  layers, per kernel offset, the input window at that offset reshaped to
  (pixels, C_in), transposed and multiplied by the output gradient. XLA:CPU's
  own weight-gradient convolution (the input as the kernel's "image") is
  several times slower;
- transposed convolutions whose kernel equals their stride: one matmul and a
  depth-to-space reshape (`patch_transpose`), with a written-out backward;
- stride-1 depthwise layers: the forward and input gradient as the sum over
  kernel taps of shifted input windows times per-channel weights
  (`depthwise`), far faster than XLA:CPU's grouped convolution at
  SegFormer's Mix-FFN sizes; the weight gradient per image, as static
  windows times dy summed over pixels;
- 3x3 stride-1 layers with >= 256 input and output channels: Winograd
  F(2x2, 3x3) (`segjax.ops.winograd`) for all three directions: the forward,
  the input gradient (from the untransposed kernel's transform) and the
  weight gradient (16 transposed-operand matmuls over tiles, 2.25x fewer
  multiplications than the per-offset ones).

The residuals saved for the backward pass are the input and the kernel, as
for XLA's native convolution. The backward pass computes only the cotangents
that are asked for (symbolic zeros), and orders its kernel reads, weight
gradient and zero-filled accumulators by data dependencies (`_zero_after`),
so that XLA neither keeps kernel-sized buffers alive through the step's
memory peak nor copies donated kernels (docs/conv.md, decision 17).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from segjax.ops import winograd


class ConvSpec(NamedTuple):
    """Everything about a convolution but its operands (hashable: a custom_vjp static)."""

    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    groups: int = 1
    precision: Any = None


def _dimension_numbers(rank: int):
    spatial = "DHW"[-rank:]
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def _accumulation_dtype(dtype):
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


def native(x, kernel, spec: ConvSpec):
    """XLA's convolution with exactly `spec`."""
    return lax.conv_general_dilated(
        x, kernel, window_strides=spec.strides, padding=spec.padding,
        lhs_dilation=spec.lhs_dilation, rhs_dilation=spec.rhs_dilation,
        dimension_numbers=_dimension_numbers(x.ndim - 2),
        feature_group_count=spec.groups, precision=spec.precision)


def padded_forward(x, kernel, spec: ConvSpec):
    """XLA's convolution, steered off its slow unpadded path (pad high, crop)."""
    unpadded = all(p == (0, 0) for p in spec.padding) and set(spec.lhs_dilation) == {1}
    if not unpadded:
        return native(x, kernel, spec)
    grown = spec._replace(padding=tuple((0, s) for s in spec.strides))
    y = native(x, kernel, grown)
    return y[(slice(None),) + tuple(slice(0, n - 1) for n in y.shape[1:-1])]


# Winograd F(2x2, 3x3) beats XLA:CPU's convolution from about this many input
# and output channels up (1.15x at 256, 1.5x at 512; 0.5-0.7x at 64-128, where
# its transforms' memory traffic dominates): docs/conv.md, decision 8.
WINOGRAD_MIN_CHANNELS = 256


def _is_winograd(x, kernel_shape, kernel_dtype, spec: ConvSpec) -> bool:
    return (x.ndim == 4 and tuple(kernel_shape[:2]) == (3, 3) and spec.groups == 1
            and spec.strides == spec.lhs_dilation == spec.rhs_dilation == (1, 1)
            and all(lo >= 0 and hi >= 0 for lo, hi in spec.padding)
            and x.dtype == jnp.float32 and kernel_dtype == jnp.float32
            and min(kernel_shape[2:]) >= WINOGRAD_MIN_CHANNELS)


def _is_depthwise(x, kernel_shape, spec: ConvSpec) -> bool:
    return (spec.groups > 1 and kernel_shape[-2] == 1
            and kernel_shape[-1] == spec.groups == x.shape[-1]
            and set(spec.strides) == {1} and set(spec.lhs_dilation) == {1})


def depthwise(x, kernel, spec: ConvSpec):
    """A stride-1 depthwise convolution as the sum over kernel taps of the shifted padded
    input times that tap's per-channel weights: one fused elementwise loop.

    XLA:CPU's grouped convolution is over an order of magnitude slower at
    SegFormer's Mix-FFN and MobileNets' stride-1 sizes, and so is its input
    gradient (the same convolution of dy, `input_gradient`); docs/transformers.md
    has the timings.
    """
    rank = x.ndim - 2
    window = kernel.shape[:rank]
    xp = _padded_input(x, spec)
    out_shape = [n - d * (k - 1) for n, d, k in zip(xp.shape[1:-1], spec.rhs_dilation, window)]
    accumulate = _accumulation_dtype(x.dtype) or x.dtype
    total = 0
    for offset in itertools.product(*(range(k) for k in window)):
        taps = _window(xp, offset, out_shape, spec).astype(accumulate)
        total = total + taps * kernel[offset + (0,)].astype(accumulate)
    return total.astype(x.dtype)


def forward(x, kernel, spec: ConvSpec):
    """The fastest CPU forward for `spec`: shifted products for stride-1 depthwise layers,
    Winograd for wide 3x3 layers, else padded XLA."""
    if _is_depthwise(x, kernel.shape, spec):
        return depthwise(x, kernel, spec)
    if _is_winograd(x, kernel.shape, kernel.dtype, spec):
        # Transformed once x exists: XLA otherwise hoists every wide layer's
        # transform (16/9 of its kernel) to the start of the program.
        return winograd.conv3x3(x, _read_after(kernel, x), spec.padding, spec.precision)
    return padded_forward(x, kernel, spec)


def _is_pointwise(kernel, spec: ConvSpec) -> bool:
    rank = kernel.ndim - 2
    return (kernel.shape[:rank] == (1,) * rank and spec.groups == 1
            and all(p == (0, 0) for p in spec.padding) and set(spec.lhs_dilation) == {1})


def pointwise(x, kernel, spec: ConvSpec):
    """A 1x1 (1x1x1) convolution as a matmul over channels (strides subsample first)."""
    if set(spec.strides) != {1}:
        x = x[(slice(None),) + tuple(slice(None, None, s) for s in spec.strides)]
    y = jnp.dot(x, kernel.reshape(kernel.shape[-2:]), precision=spec.precision,
                preferred_element_type=_accumulation_dtype(x.dtype))
    return y.astype(x.dtype)


def conv(x, kernel, spec: ConvSpec):
    """The convolution `spec` of `x` with `kernel`, by the fastest CPU formulation."""
    if _is_pointwise(kernel, spec):
        return pointwise(x, kernel, spec)
    return _conv(x, kernel, spec)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x, kernel, spec: ConvSpec):
    return forward(x, kernel, spec)


def _conv_fwd(x, kernel, spec: ConvSpec):
    # With symbolic zeros, x and kernel arrive as CustomVJPPrimal(value, perturbed).
    needs = (x.perturbed, kernel.perturbed)
    return forward(x.value, kernel.value, spec), (x.value, kernel.value, needs)


def _conv_bwd(spec: ConvSpec, residuals, dy):
    x, kernel, (needs_input_gradient, needs_weight_gradient) = residuals
    if isinstance(dy, jax.custom_derivatives.SymbolicZero):
        return None, None
    if not needs_input_gradient:
        return None, weight_gradient(x, dy, kernel.shape, spec) if needs_weight_gradient else None
    # The input gradient derives from the kernel only after dy (or dw) exists:
    # otherwise XLA CSEs its Winograd transform with the forward's, or hoists
    # the flipped kernel into the forward pass, alive through the memory peak.
    if not needs_weight_gradient:
        return input_gradient(dy, _read_after(kernel, dy), x.shape, spec), None
    if kernel.size > x.size:
        # dw waits for all of dx, whose computation reads the kernel last: the
        # optimizer updates a donated kernel in place after dw, and an unordered
        # read makes XLA copy the kernel at the start of the step and keep the
        # copy through the backward. (All of dx, because XLA sinks a slice of
        # it into the one Winograd tile product that holds it.)
        dx = input_gradient(dy, _read_after(kernel, dy), x.shape, spec)
        return dx, weight_gradient(x, dy, kernel.shape, spec, jnp.sum(dx, dtype=jnp.float32))
    # dx waits for dw, so that x (often last read by dw) is freed before dx is
    # allocated; the small kernel is copied instead.
    dw = weight_gradient(x, dy, kernel.shape, spec)
    return input_gradient(dy, _read_after(kernel, dw), x.shape, spec), dw


_conv.defvjp(_conv_fwd, _conv_bwd, symbolic_zeros=True)


def transposed_kernel(kernel, groups: int):
    """The kernel of the input gradient: spatially flipped, C_in and C_out swapped per group."""
    rank = kernel.ndim - 2
    *window, c_in_group, c_out = kernel.shape
    flipped = jnp.flip(kernel, axis=tuple(range(rank)))
    grouped = flipped.reshape(*window, c_in_group, groups, c_out // groups)
    swapped = jnp.transpose(grouped, tuple(range(rank)) + (rank + 2, rank + 1, rank))
    return swapped.reshape(*window, c_out // groups, groups * c_in_group)


def input_gradient(dy, kernel, x_shape, spec: ConvSpec):
    """d(loss)/dx: the output gradient convolved with the transposed kernel."""
    rank = dy.ndim - 2
    if set(spec.lhs_dilation) != {1}:
        _, vjp = jax.vjp(lambda x: native(x, kernel, spec), jnp.zeros(x_shape, dy.dtype))
        return vjp(dy)[0]
    pads = []
    for n, o, k, s, d, (lo, hi) in zip(x_shape[1:-1], dy.shape[1:-1], kernel.shape[:rank],
                                       spec.strides, spec.rhs_dilation, spec.padding):
        extent = d * (k - 1) + 1
        remainder = n + lo + hi - extent - (o - 1) * s
        pads.append((extent - 1 - lo, extent - 1 - hi + remainder))
    backward = ConvSpec((1,) * rank, tuple(pads), spec.strides, spec.rhs_dilation,
                        spec.groups, spec.precision)
    if _is_winograd(dy, kernel.shape, kernel.dtype, backward):
        return winograd.conv3x3(dy, kernel, backward.padding, spec.precision,
                                kernel_transposed=True)
    return forward(dy, transposed_kernel(kernel, spec.groups), backward)


def _padded_input(x, spec: ConvSpec):
    """The input with the forward's padding (and input dilation) applied."""
    config = [(0, 0, 0)] + [(lo, hi, ld - 1) for (lo, hi), ld in
                            zip(spec.padding, spec.lhs_dilation)] + [(0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _window(xp, offset, out_shape, spec: ConvSpec):
    """The (N, *out, C) window of the padded input that kernel offset `offset` multiplies."""
    start = [0] + [t * d for t, d in zip(offset, spec.rhs_dilation)] + [0]
    extent = [xp.shape[0]] + [(o - 1) * s + 1 for o, s in zip(out_shape, spec.strides)] \
        + [xp.shape[-1]]
    window = lax.dynamic_slice(xp, start, extent)
    if set(spec.strides) == {1}:
        return window
    return window[(slice(None),) + tuple(slice(None, None, s) for s in spec.strides)]


# Layers with at most this many input or output channels take their weight
# gradient from blocks of im2col rows (`_column_block_weight_gradient`); wider
# layers from per-offset matmuls (docs/conv.md, decision 15).
COLUMN_BLOCK_MAX_CHANNELS = 128
# Elements of one block's two matmul operands (2 MB in float32): small enough
# to stay in the CPU's cache.
COLUMN_BLOCK_ELEMENTS = 2 ** 19


def _zero_after(anchor):
    """A scalar 0 of anchor's dtype that XLA can only compute once `anchor` exists.

    Work that depends on nothing (a zero-initialised accumulator) or only on
    parameters (a kernel transform) is otherwise free for XLA:CPU's scheduler
    to place anywhere, and it placed the backward's in the forward pass, alive
    through the step's memory peak (docs/conv.md, decision 17).
    `lax.optimization_barrier` does not prevent this: XLA:CPU removes barriers
    before it schedules. |a| clamped to at most 0 is exactly 0 for every
    number, finite or infinite, and nothing XLA simplifies away.
    """
    first = lax.stop_gradient(anchor.reshape(-1)[0])
    return jnp.minimum(jnp.abs(first), jnp.zeros((), first.dtype))


def _read_after(array, anchor):
    """`array`, unchanged, as a value XLA can only compute once `anchor` exists."""
    return array + _zero_after(anchor).astype(array.dtype)


def _zeros_after(anchor, shape, dtype):
    """Zeros of `shape` that XLA cannot create before `anchor` is computed."""
    return jnp.broadcast_to(_zero_after(anchor).astype(dtype), shape)


def weight_gradient(x, dy, kernel_shape, spec: ConvSpec, after=None):
    """d(loss)/dkernel, by the formulation that is fastest for the layer's width.

    Winograd for wide 3x3 stride-1 layers, column blocks for narrow ones, per-offset
    matmuls otherwise. Its computation starts only once `after` (default: dy) exists.
    """
    if _is_winograd(x, kernel_shape, x.dtype, spec):
        # Read after `after`: the reads fuse into the transforms' padding.
        anchor = dy if after is None else after
        return winograd.weight_gradient3x3(_read_after(x, anchor), _read_after(dy, anchor),
                                           spec.padding, spec.precision)
    if _is_depthwise(x, kernel_shape, spec):
        return _depthwise_weight_gradient(x, dy, kernel_shape, spec, after)
    if spec.groups == 1 and min(kernel_shape[-2:]) <= COLUMN_BLOCK_MAX_CHANNELS:
        return _column_block_weight_gradient(x, dy, kernel_shape, spec, after)
    return _per_offset_weight_gradient(x, dy, kernel_shape, spec, after)


def _depthwise_weight_gradient(x, dy, kernel_shape, spec: ConvSpec, after=None):
    """d(loss)/dkernel of a stride-1 depthwise layer: per image (a scan over the batch), the
    sum over pixels of each tap's shifted input window times dy.

    The per-offset loop's traced window offsets cost 4x XLA's own weight
    gradient inside SegFormer's Mix-FFN (dy there is a fused GELU-derivative
    expression); static windows of one image at a time stay in cache.
    """
    rank = x.ndim - 2
    window = kernel_shape[:rank]
    xp = _padded_input(x, spec)
    out_shape = dy.shape[1:-1]
    offsets = list(itertools.product(*(range(k) for k in window)))

    def one_image(total, image):
        xp_image, dy_image = image
        dy_image = dy_image.astype(jnp.float32)
        sums = [jnp.sum(_window(xp_image[None], offset, out_shape, spec)[0].astype(jnp.float32)
                        * dy_image, axis=tuple(range(rank))) for offset in offsets]
        return total + jnp.stack(sums), None

    zeros = _zeros_after(dy if after is None else after, (len(offsets), x.shape[-1]),
                         jnp.float32)
    total, _ = lax.scan(one_image, zeros, (xp, dy))
    return total.reshape(kernel_shape).astype(x.dtype)


def _column_block_weight_gradient(x, dy, kernel_shape, spec: ConvSpec, after=None, *,
                                  rows=None, shift_last_axis=None):
    """d(loss)/dkernel as a sum over blocks of output rows of cols @ shifted dy.

    Narrow layers make the per-offset product (pixels, C_in)^T (pixels,
    C_out) a 64x64 result with a contraction over 10^5 pixels, which XLA:CPU's
    matmul runs at a quarter of its peak. With the channels and kernel taps
    as the rows of a transposed im2col block, the matmul is tall and runs
    near peak; the blocks (a few output rows each) stay in cache, and a
    `lax.scan` keeps only one alive.

    Building that block is a transposing gather, one copy of the input per
    kernel tap. When the last spatial axis has stride 1, its taps move to the
    other operand instead (decision 19): the block holds the input's full
    padded rows, one copy per tap of the other axes (3 instead of 9 for a
    3x3 kernel), and the output gradient, which is channels-last and cheap to
    copy, is repeated once per last-axis tap, shifted along that axis and
    zero-filled: dW[.., j] = sum_x' X[.., x'] dY[.., x' - j*d]. The product
    is (C_in x other taps, pixels) x (pixels, last taps x C_out).
    `rows` (output rows per block) and `shift_last_axis` default to the
    layer's size and stride.
    """
    rank = x.ndim - 2
    window_shape = kernel_shape[:rank]
    n, c_in, c_out = x.shape[0], x.shape[-1], dy.shape[-1]
    out_shape = dy.shape[1:-1]
    strides, dilation = spec.strides, spec.rhs_dilation
    if shift_last_axis is None:
        shift_last_axis = can_shift_last_axis(spec)
    elif shift_last_axis and not can_shift_last_axis(spec):
        raise ValueError(f"shift_last_axis needs 2+ spatial axes and a last stride of 1, got "
                         f"{rank} axes, strides {strides}")
    xp = _padded_input(x, spec)
    gathered_window = window_shape[:-1] if shift_last_axis else window_shape
    gathered_taps = int(np.prod(gathered_window))
    shifts = window_shape[-1] if shift_last_axis else 1
    width = xp.shape[-2] if shift_last_axis else out_shape[-1]
    row_pixels = n * int(np.prod(out_shape[1:-1])) * (width if rank > 1 else 1)
    row_elements = row_pixels * (c_in * gathered_taps + shifts * c_out)
    if rows is None:
        rows = COLUMN_BLOCK_ELEMENTS // row_elements
    rows = int(np.clip(rows, 1, out_shape[0]))
    window_rows = dilation[0] * (window_shape[0] - 1) + 1

    def block_product(start, count):
        """cols^T @ dy over output rows [start, start + count) (`count` static)."""
        slab = lax.dynamic_slice_in_dim(xp, start * strides[0], (count - 1) * strides[0]
                                        + window_rows, axis=1)
        slab = jnp.moveaxis(slab, -1, 0)  # (C_in, N, rows, ...)
        block_out = (count,) + out_shape[1:]
        windows = []
        for offset in itertools.product(*(range(k) for k in gathered_window)):
            index = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                          for t, d, o, s in zip(offset, dilation, block_out, strides))
            windows.append(slab[(slice(None), slice(None)) + index])
        cols = jnp.stack(windows, axis=1).reshape(c_in * gathered_taps, -1)
        dy_block = lax.dynamic_slice_in_dim(dy, start, count, axis=1)
        if shift_last_axis:
            dy_block = jnp.concatenate(
                [_shifted_last_axis(dy_block, j * dilation[-1], width) for j in range(shifts)],
                axis=-1)
        return lax.dot_general(cols, dy_block.reshape(-1, shifts * c_out),
                               (((1,), (0,)), ((), ())), precision=spec.precision,
                               preferred_element_type=jnp.float32)

    full_blocks, remainder = divmod(out_shape[0], rows)
    zeros = _zeros_after(dy if after is None else after,
                         (c_in * gathered_taps, shifts * c_out), jnp.float32)
    total, _ = lax.scan(lambda total, block: (total + block_product(block * rows, rows), None),
                        zeros, jnp.arange(full_blocks))
    if remainder:
        total = total + block_product(full_blocks * rows, remainder)
    # rows (C_in, gathered taps), columns (shifted taps, C_out) -> (*window, C_in, C_out)
    per_tap = total.reshape((c_in,) + tuple(window_shape) + (c_out,))
    return jnp.moveaxis(per_tap, 0, rank).astype(x.dtype)


def can_shift_last_axis(spec: ConvSpec) -> bool:
    """Whether the column blocks can take the last axis's taps as shifts of dy (decision 19)."""
    return len(spec.strides) >= 2 and spec.strides[-1] == 1


def _shifted_last_axis(a, shift, width):
    """`a` moved `shift` places along its last spatial axis, zero-filled to `width`."""
    config = [(0, 0, 0)] * (a.ndim - 2) + [(shift, width - a.shape[-2] - shift, 0), (0, 0, 0)]
    return lax.pad(a, jnp.zeros((), a.dtype), config)


def _per_offset_weight_gradient(x, dy, kernel_shape, spec: ConvSpec, after=None):
    """d(loss)/dkernel: per kernel offset, window^T @ dy contracted over all pixels.

    The offsets run in a loop, so only one window is alive at a time:
    unrolled, XLA:CPU kept all of them and tripled the U-Net's training
    memory.
    """
    rank = x.ndim - 2
    window_shape = kernel_shape[:rank]
    c_out = dy.shape[-1]
    pixels = int(np.prod(dy.shape[:-1]))
    groups = spec.groups
    c_in_group = x.shape[-1] // groups
    accumulate = jnp.float32
    dy_flat = dy.reshape(pixels, groups, c_out // groups)
    xp = _padded_input(x, spec)
    offsets = jnp.asarray(list(itertools.product(*(range(k) for k in window_shape))),
                          jnp.int32)

    def one_offset(offset):
        xs = _window(xp, [offset[i] for i in range(rank)], dy.shape[1:-1], spec)
        xs = xs.reshape(pixels, groups, c_in_group)
        if groups == 1:
            return lax.dot_general(xs[:, 0], dy_flat[:, 0], (((0,), (0,)), ((), ())),
                                   precision=spec.precision, preferred_element_type=accumulate)
        if c_in_group == 1:  # depthwise: a multiply-reduce per channel
            g = jnp.sum(xs.astype(accumulate) * dy_flat.astype(accumulate), axis=0)
            return g.reshape(1, c_out)
        g = lax.dot_general(xs, dy_flat, (((0,), (0,)), ((1,), (1,))),
                            precision=spec.precision, preferred_element_type=accumulate)
        return jnp.swapaxes(g, 0, 1).reshape(c_in_group, c_out)  # (c_in/g, groups * c_out/g)

    def store_offset(tap, stacked):
        return lax.dynamic_update_index_in_dim(stacked, one_offset(offsets[tap]), tap, 0)

    stacked = _zeros_after(dy if after is None else after,
                           (len(offsets), kernel_shape[-2], c_out), accumulate)
    stacked = lax.fori_loop(0, len(offsets), store_offset, stacked)
    return stacked.reshape(kernel_shape).astype(x.dtype)


def _patch_order(rank: int) -> list[int]:
    """Axes (N, *S, *k, O) -> (N, S1, k1, S2, k2, ..., O): output pixel s*i + a sits at (i, a)."""
    return [0] + [i for axis in range(rank) for i in (1 + axis, 1 + rank + axis)] + [2 * rank + 1]


@jax.custom_vjp
def patch_transpose(x, kernel):
    """A transposed convolution whose kernel equals its stride, as matmul + depth-to-space.

    Output pixel (s*i + a) receives x[i] @ kernel[a] (PyTorch's ConvTranspose
    with padding 0, `kernel` laid out (*k, C_in, C_out)). The backward pass
    is written out (`_patch_transpose_bwd`): JAX's own transposed the output
    gradient to pixels-last and the kernel to (*k, C_out, C_in), copies that
    made it slower (docs/conv.md, decision 20).
    """
    rank = x.ndim - 2
    window = kernel.shape[:rank]
    c_out = kernel.shape[-1]
    y = lax.dot_general(x, kernel, (((x.ndim - 1,), (rank,)), ((), ())),
                        preferred_element_type=_accumulation_dtype(x.dtype))
    y = jnp.transpose(y, _patch_order(rank))
    shape = (x.shape[0],) + tuple(n * k for n, k in zip(x.shape[1:-1], window)) + (c_out,)
    return y.reshape(shape).astype(x.dtype)


def _patch_transpose_fwd(x, kernel):
    return patch_transpose(x, kernel), (x, kernel)


def _patch_transpose_bwd(residuals, dy):
    """dx = dy's patches (pixels, taps x C_out) times the kernel as (C_in, taps x C_out),
    transposed; dkernel = x^T (C_in, pixels) times those patches."""
    x, kernel = residuals
    rank = x.ndim - 2
    window = kernel.shape[:rank]
    taps = int(np.prod(window))
    c_in, c_out = kernel.shape[-2:]
    pixels = int(np.prod(x.shape[:-1]))
    split = (x.shape[0],) + tuple(d for n, k in zip(x.shape[1:-1], window) for d in (n, k)) \
        + (c_out,)
    # (N, S1, k1, S2, k2, ..., O) -> (N, *S, *k, O): one copy, in runs of C_out.
    patches = jnp.transpose(dy.reshape(split), np.argsort(_patch_order(rank)))
    patches = patches.reshape(pixels, taps * c_out)
    # Read once dy exists: otherwise XLA may build the regrouped kernel in the
    # forward pass and keep it alive through the step's peak (decision 17).
    kernel = _read_after(kernel, dy)
    kernel_rows = jnp.moveaxis(kernel.reshape(taps, c_in, c_out), 1, 0)
    kernel_rows = kernel_rows.reshape(c_in, taps * c_out)
    accumulate = _accumulation_dtype(x.dtype)
    dx = lax.dot_general(patches, kernel_rows, (((1,), (1,)), ((), ())),
                         preferred_element_type=accumulate)
    dk = lax.dot_general(x.reshape(pixels, c_in), patches, (((0,), (0,)), ((), ())),
                         preferred_element_type=accumulate)
    dk = jnp.moveaxis(dk.reshape(c_in, taps, c_out), 0, 1).reshape(kernel.shape)
    return dx.reshape(x.shape).astype(x.dtype), dk.astype(kernel.dtype)


patch_transpose.defvjp(_patch_transpose_fwd, _patch_transpose_bwd)
