"""Activations (segjax.ops.activations): the stored ReLU's values, derivatives and memory."""

import jax
import jax.numpy as jnp
import numpy as np

from segjax.models import layers
from segjax.ops import activations
from segjax.ops import conv as conv_ops


def test_stored_relu_equals_jax_relu_in_value_gradient_and_forward_mode():
    x = jnp.array([-2.0, -0.0, 0.0, 3.5, 1e38, jnp.inf, -jnp.inf, jnp.nan])
    np.testing.assert_array_equal(activations.stored_relu(x), jax.nn.relu(x))
    grad = jax.grad(lambda v: jnp.nansum(activations.stored_relu(v) * jnp.arange(8.0)))
    want = jax.grad(lambda v: jnp.nansum(jax.nn.relu(v) * jnp.arange(8.0)))
    np.testing.assert_array_equal(grad(x), want(x))
    _, tangent = jax.jvp(activations.stored_relu, (x,), (jnp.full_like(x, 2.0),))
    np.testing.assert_array_equal(tangent, [0, 0, 0, 2, 2, 2, 0, 0])
    assert activations.stored_relu(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
    unnormalized = layers.ConvNormAct(4, norm=None)
    variables = unnormalized.init(jax.random.PRNGKey(0), jnp.ones((1, 5, 5, 2)))
    jaxpr = str(jax.make_jaxpr(lambda v: unnormalized.apply(v, jnp.ones((1, 5, 5, 2))))(variables))
    assert "custom_jvp_call" in jaxpr and "div" in jaxpr


def test_stored_relu_lets_the_raw_convolution_output_die_in_the_forward_pass():
    """Three conv + bias + ReLU layers: with jax.nn.relu XLA keeps a convolution's raw
    output for the backward pass next to its activation; with stored_relu it does not."""
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 160, 160, 32))
    kernels = [jax.random.normal(jax.random.PRNGKey(i), (3, 3, 32, 32)) * 0.1 for i in (1, 2, 3)]
    bias = jnp.full((32,), 0.1)

    def temporaries(act):
        def loss(kernels, x):
            for kernel in kernels:
                x = act(conv_ops.conv(x, kernel, padding="VALID", impl="cpu") + bias)
            return jnp.sum(x ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(kernels, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    activation_bytes = 158 * 158 * 32 * 4
    assert temporaries(activations.stored_relu) <= temporaries(jax.nn.relu) - activation_bytes // 2
