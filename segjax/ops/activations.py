"""Activation functions by name, and the stored ReLU of unnormalized convolutions.

`activation(name)` maps a config string ('relu', 'gelu', 'hard_swish', ...)
to a plain function; a learned activation (PReLU) is a module and lives in
`segjax.models.layers`. `softmax` computes in float32 whatever its input's
dtype, so attention under bfloat16 keeps its precision.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


@jax.custom_jvp
def stored_relu(x):
    """max(x, 0), stored once: its derivative reads the output, and XLA cannot recompute it.

    For a convolution + bias + ReLU with no normalization. `jax.nn.relu`'s
    derivative reads its input, so XLA:CPU keeps each raw convolution output
    alive until the backward pass. Dividing by an exact elementwise 1 computed
    from `x` makes the activation a buffer of its own (XLA never duplicates a
    division into another fusion), so the raw output dies in the forward pass.
    Bitwise `max(x, 0)` for finite `x`; NaN stays NaN. After a normalization
    the raw output is kept anyway, so normalized layers use `jax.nn.relu`
    (docs/conv.md, decision 16, has the measurements).
    """
    return jnp.maximum(x, 0) / (1 + jnp.minimum(jnp.abs(x), 0))


@stored_relu.defjvp
def _stored_relu_jvp(primals, tangents):
    (x,), (tangent,) = primals, tangents
    y = stored_relu(x)
    return y, jnp.where(y > 0, tangent, jnp.zeros_like(tangent))


def hard_sigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def hard_swish(x):
    return x * hard_sigmoid(x)


ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "hard_swish": hard_swish,
    "hard_sigmoid": hard_sigmoid,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "elu": jax.nn.elu,
}


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax computed in float32 (attention under bfloat16), returned in x's dtype."""
    return jax.nn.softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)


def activation(name: str | Callable | None) -> Callable:
    """An activation function by name ('relu', 'gelu', 'hard_swish', ...)."""
    if name is None or name == "none" or name == "identity":
        return lambda x: x
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}, "
                         "'prelu' (learned, via ConvNormAct), None")
    return ACTIVATIONS[name]
