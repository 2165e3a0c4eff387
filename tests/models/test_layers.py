"""Shared modules (segjax.models.layers): channel dropout, weight-standardised convolution."""

import jax
import jax.numpy as jnp
import numpy as np

from segjax.models import layers
from segjax.ops import conv as conv_ops


def test_channel_dropout_drops_whole_channels_while_training():
    x = jnp.ones((2, 6, 5, 64))
    dropout = layers.ChannelDropout(0.5)
    y = dropout.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    per_channel = np.asarray(y).reshape(2, 30, 64)
    assert np.all(per_channel.min(1) == per_channel.max(1))      # constant over space
    assert set(np.unique(per_channel)) == {0.0, 2.0}
    np.testing.assert_array_equal(dropout.apply({}, x, train=False), x)


def test_conv_weight_standardization_normalises_each_output_channel():
    """Conv(weight_standardization=eps): kernels of zero mean, unit variance per output
    channel (BiT), so scaling the stored kernel does not change the output."""
    conv = layers.Conv(4, 3, padding=1, use_bias=False, weight_standardization=1e-8)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 8, 3)), jnp.float32)
    variables = conv.init(jax.random.PRNGKey(0), x)
    scaled = jax.tree_util.tree_map(lambda k: 3.0 * k + 1.0, variables)
    np.testing.assert_allclose(conv.apply(variables, x), conv.apply(scaled, x), atol=1e-4)
    kernel = conv_ops.standardize_kernel(variables["params"]["kernel"], 1e-8)
    np.testing.assert_allclose(kernel.mean(axis=(0, 1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(kernel.var(axis=(0, 1, 2)), 1, atol=1e-4)
