"""Pooling (segjax.ops.pooling): the reshape max pool against reduce_window and torch, adaptive
average pooling against torch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.ops import pooling


@pytest.mark.parametrize("shape, window", [
    ((2, 8, 10, 3), 2),          # U-Net / VGG 2x2/2
    ((1, 9, 7, 4), 2),           # odd sizes: VALID drops the last row / column
    ((1, 9, 9, 2), 3),
    ((1, 6, 8, 4, 2), 2),        # 3D
])
def test_non_overlapping_max_pool_equals_reduce_window_with_gradient(shape, window):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)  # continuous: no ties
    rank = len(shape) - 2
    reference = lambda v: nn.max_pool(v, (window,) * rank, (window,) * rank, "VALID")
    fast = lambda v: pooling.max_pool(v, window)
    np.testing.assert_array_equal(fast(x), reference(x))
    cotangent = jax.random.normal(jax.random.PRNGKey(1), reference(x).shape)
    grad = lambda f: jax.grad(lambda v: jnp.sum(f(v) * cotangent))(x)
    np.testing.assert_array_equal(grad(fast), grad(reference))


def test_max_pool_by_hand_and_gradient_goes_to_the_maximum():
    x = jnp.asarray([[1., 5., 0., 2.], [3., 4., 7., 1.]]).reshape(1, 2, 4, 1)
    assert pooling.max_pool(x, 2)[0, :, :, 0].tolist() == [[5.0, 7.0]]
    grad = jax.grad(lambda v: pooling.max_pool(v, 2).sum())(x)[0, :, :, 0]
    assert grad.tolist() == [[0., 1., 0., 0.], [0., 0., 1., 0.]]


def test_overlapping_and_padded_max_pool_still_use_reduce_window():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 9, 2))
    expected = nn.max_pool(x, (3, 3), (2, 2), [(1, 1), (1, 1)])
    np.testing.assert_array_equal(pooling.max_pool(x, 3, 2, padding=1), expected)


@pytest.mark.parametrize("shape", [(1, 4, 6, 2), (1, 4, 4, 4, 1)])
def test_max_pool_ties_send_the_gradient_to_the_first_maximum_as_pytorch(shape):
    # Every window is all ties: PyTorch's max pool routes each window's gradient
    # to its first element (row-major); sharing it (JAX's rule) would give 1/4, 1/8.
    x = jnp.zeros(shape)
    cotangent = jnp.arange(1.0, 1.0 + np.prod(pooling.max_pool(x, 2).shape)).reshape(
        pooling.max_pool(x, 2).shape)
    grad = jax.grad(lambda v: jnp.sum(pooling.max_pool(v, 2) * cotangent))(x)
    rank = len(shape) - 2
    first = (slice(None),) + (slice(0, None, 2),) * rank
    np.testing.assert_array_equal(grad[first], cotangent)
    assert float(grad.sum()) == float(cotangent.sum())


def test_max_pool_gradient_with_ties_equals_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).integers(0, 3, size=(2, 8, 6, 3)).astype(np.float32)
    cotangent = np.random.default_rng(1).normal(size=(2, 4, 3, 3)).astype(np.float32)
    grad = jax.grad(lambda v: jnp.sum(pooling.max_pool(v, 2) * cotangent))(jnp.asarray(x))
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 2).backward(torch.tensor(np.moveaxis(cotangent, -1, 1)))
    np.testing.assert_array_equal(grad, np.moveaxis(xt.grad.numpy(), 1, -1))


@pytest.mark.parametrize("shape, bins", [
    ((2, 8, 12, 3), (1, 2, 3, 6)),     # PSPNet's bins on a map they do not divide
    ((1, 7, 5, 2), (3, 6)),            # bins wider than the input repeat pixels
    ((1, 6, 5, 7, 2), (2, 3)),         # 3D
])
def test_adaptive_avg_pool_equals_torch(shape, bins):
    from tests import torch_refs  # pylint: disable=import-outside-toplevel
    torch = torch_refs.import_torch()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    pool = torch.nn.AdaptiveAvgPool2d if len(shape) == 4 else torch.nn.AdaptiveAvgPool3d
    channels_first = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    for size in bins:
        expected = np.moveaxis(pool(size)(channels_first).numpy(), 1, -1)
        np.testing.assert_allclose(pooling.adaptive_avg_pool(jnp.asarray(x), size), expected,
                                   rtol=1e-5, atol=1e-6)
