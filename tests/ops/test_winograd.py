"""Winograd F(2x2, 3x3) equals XLA's 3x3 convolution, alone and inside the CPU formulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.ops import conv as conv_ops
from segjax.ops import conv_cpu, winograd


def _reference(x, kernel, padding):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("shape, padding", [
    ((2, 9, 9, 4), ((0, 0), (0, 0))),      # VALID, odd output (7x7): one discarded tile row
    ((1, 10, 7, 3), ((1, 1), (1, 1))),     # SAME
    ((1, 8, 8, 5), ((2, 0), (1, 3))),      # asymmetric explicit padding
    ((1, 3, 3, 2), ((0, 0), (0, 0))),      # a single output pixel
])
def test_winograd_equals_direct_convolution(shape, padding):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, shape[-1], 6))
    want = _reference(x, kernel, padding)
    got = winograd.conv3x3(x, kernel, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("padding", [((2, 2), (2, 2)), ((1, 1), (1, 1)), ((2, 1), (0, 3))])
def test_transposed_kernel_mode_convolves_with_the_flipped_swapped_kernel(padding):
    # The input-gradient convolution: `kernel` is (3, 3, C_in=5, C_out=7), x has C_out channels.
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 9, 7))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5, 7))
    want = _reference(x, conv_cpu.transposed_kernel(kernel, 1), padding)
    got = winograd.conv3x3(x, kernel, padding, kernel_transposed=True)
    assert got.shape == want.shape == (2, 6 + sum(padding[0]), 7 + sum(padding[1]), 5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


def _kernel_gradient_reference(x, dy, padding):
    kernel_shape = (3, 3, x.shape[-1], dy.shape[-1])
    _, vjp = jax.vjp(lambda k: _reference(x, k, padding), jnp.zeros(kernel_shape))
    return vjp(dy)[0]


@pytest.mark.parametrize("shape, padding", [
    ((2, 9, 9, 4), ((0, 0), (0, 0))),      # VALID, odd output: dy zero-extended to whole tiles
    ((1, 10, 7, 3), ((1, 1), (1, 1))),     # SAME
    ((1, 8, 8, 5), ((2, 0), (1, 3))),      # asymmetric explicit padding
    ((1, 3, 3, 2), ((0, 0), (0, 0))),      # a single output pixel
])
@pytest.mark.parametrize("block_rows", [1, 2, None])  # None: the whole layer in one block
def test_winograd_weight_gradient_equals_xla_kernel_gradient(shape, padding, block_rows):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    out = [n + lo + hi - 2 for n, (lo, hi) in zip(shape[1:3], padding)]
    dy = jax.random.normal(jax.random.PRNGKey(2), (shape[0], *out, 6))
    row_elements = 16 * shape[0] * -(-out[1] // 2) * (shape[-1] + 6)
    block = None if block_rows is None else block_rows * row_elements
    want = _kernel_gradient_reference(x, dy, padding)
    got = winograd.weight_gradient3x3(x, dy, padding, block_elements=block)
    assert got.shape == want.shape == (3, 3, shape[-1], 6)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


def test_weight_gradient_of_one_tile_by_hand():
    # One 4x4 input tile with ones in its centre 2x2 and dy = 1 on the 2x2 output: tap (i, j)
    # sums the 2x2 input window at (i, j), which covers 1 (corner), 2 (edge) or 4 (centre) ones.
    x = jnp.zeros((1, 4, 4, 1)).at[0, 1:3, 1:3, 0].set(1.0)
    dy = jnp.ones((1, 2, 2, 1))
    got = winograd.weight_gradient3x3(x, dy, ((0, 0), (0, 0)))[..., 0, 0]
    np.testing.assert_allclose(got, _kernel_gradient_reference(x, dy, ((0, 0), (0, 0)))[..., 0, 0])
    np.testing.assert_allclose(got, [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_kernel_transform_by_hand():
    # G g G^T for g = e_(1,1) (only the centre tap): G's middle column outer itself.
    kernel = jnp.zeros((3, 3, 1, 1)).at[1, 1].set(1.0)
    centre = np.array([0.0, 0.5, -0.5, 0.0])
    np.testing.assert_array_equal(jnp.stack(winograd.kernel_positions(kernel)).reshape(4, 4),
                                  np.outer(centre, centre))


def test_wide_3x3_layers_use_winograd_and_match_native_with_gradients():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 7, 6, 256))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 256, 256)) * 0.05
    spec = conv_cpu.ConvSpec((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1))
    assert conv_cpu._is_winograd(x, kernel.shape, kernel.dtype, spec)
    narrow = kernel[:, :, :128]
    assert not conv_cpu._is_winograd(x[..., :128], narrow.shape, narrow.dtype, spec)
    assert not conv_cpu._is_winograd(x, kernel.shape, kernel.dtype,
                                     spec._replace(strides=(2, 2)))
    hlo = jax.jit(lambda a, b: conv_ops.conv(a, b, padding=1, impl="cpu")).lower(x, kernel) \
        .as_text()
    assert "convolution" not in hlo  # the forward is Winograd's matmuls, not XLA's conv

    def value_and_grads(impl):
        fn = lambda a, b: conv_ops.conv(a, b, padding=1, impl=impl)
        y, vjp = jax.vjp(fn, x, kernel)
        return (y, *vjp(jnp.cos(y)))

    for got, want in zip(value_and_grads("cpu"), value_and_grads("native")):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * float(np.abs(want).max()))
