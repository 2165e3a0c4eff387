"""Shared layers: pooling against reduce_window and torch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import layers


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
    fast = lambda v: layers.max_pool(v, window)
    np.testing.assert_array_equal(fast(x), reference(x))
    cotangent = jax.random.normal(jax.random.PRNGKey(1), reference(x).shape)
    grad = lambda f: jax.grad(lambda v: jnp.sum(f(v) * cotangent))(x)
    np.testing.assert_array_equal(grad(fast), grad(reference))


def test_max_pool_by_hand_and_gradient_goes_to_the_maximum():
    x = jnp.asarray([[1., 5., 0., 2.], [3., 4., 7., 1.]]).reshape(1, 2, 4, 1)
    assert layers.max_pool(x, 2)[0, :, :, 0].tolist() == [[5.0, 7.0]]
    grad = jax.grad(lambda v: layers.max_pool(v, 2).sum())(x)[0, :, :, 0]
    assert grad.tolist() == [[0., 1., 0., 0.], [0., 0., 1., 0.]]


def test_overlapping_and_padded_max_pool_still_use_reduce_window():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 9, 2))
    expected = nn.max_pool(x, (3, 3), (2, 2), [(1, 1), (1, 1)])
    np.testing.assert_array_equal(layers.max_pool(x, 3, 2, padding=1), expected)
