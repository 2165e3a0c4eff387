"""The "cpu" formulation's stride-1 depthwise path (shifted products) against XLA's grouped
convolution: values, input and weight gradients, dilation, asymmetric padding, 3D, bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.ops import conv as conv_ops


@pytest.mark.parametrize("shape, kernel, padding, dilation", [
    ((2, 9, 11, 6), (3, 3), 1, 1),
    ((2, 9, 11, 6), (3, 3), 2, 2),              # dilated (MobileNet at output stride 16)
    ((1, 8, 8, 4), (3, 3), "SAME", 1),
    ((1, 8, 7, 4), (5, 3), ((1, 3), (0, 2)), 1),  # asymmetric padding, rectangular kernel
    ((1, 5, 6, 7, 3), (3, 3, 3), 1, 1),         # 3D
])
def test_depthwise_matches_xla(shape, kernel, padding, dilation):
    rng = np.random.default_rng(0)
    channels = shape[-1]
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(kernel + (1, channels)), jnp.float32)

    def run(impl):
        f = lambda x, w: conv_ops.conv(x, w, padding=padding, rhs_dilation=dilation,
                                       feature_group_count=channels, impl=impl)
        y = f(x, w)
        cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape), jnp.float32)
        grads = jax.grad(lambda x, w: jnp.sum(f(x, w) * cotangent), argnums=(0, 1))(x, w)
        return (y,) + grads

    for ours, theirs in zip(run("cpu"), run("native")):
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_depthwise_bfloat16_accumulates_in_float32():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 8, 8, 16)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((3, 3, 1, 16)), jnp.bfloat16)
    ours = conv_ops.conv(x, w, padding=1, feature_group_count=16, impl="cpu")
    theirs = conv_ops.conv(x.astype(jnp.float32), w.astype(jnp.float32), padding=1,
                           feature_group_count=16, impl="native")
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ours, np.float32), theirs, atol=0.1, rtol=0.02)
