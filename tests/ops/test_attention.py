"""segjax.ops.attention: every formulation computes the same attention, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.ops import attention as attention_ops


def operands(batch=(2,), t=7, s=5, heads=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    return draw(*batch, t, heads, size), draw(*batch, s, heads, size), \
        draw(*batch, s, heads, size)


def reference(q, k, v, bias=None, mask=None, scale=None):
    """softmax(scale q k^T + bias) v, head by head, in float64 NumPy."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    logits = np.einsum("...tnh,...snh->...nts", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    logits -= logits.max(-1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("...nts,...snh->...tnh", weights, v)


@pytest.mark.parametrize("implementation", ["auto", "xla", "einsum"])
def test_formulations_match_the_definition(implementation):
    q, k, v = operands()
    out = attention_ops.attention(q, k, v, implementation=implementation)
    assert out.shape == q.shape
    np.testing.assert_allclose(out, reference(q, k, v), atol=1e-5)


@pytest.mark.parametrize("implementation", ["xla", "einsum"])
def test_bias_mask_scale_and_extra_batch_axes(implementation):
    """Two batch axes (axial attention's (N, W) rows), a per-head bias broadcast over
    the batch, a mask broadcast over the heads, an explicit scale."""
    q, k, v = operands(batch=(2, 3))
    rng = np.random.default_rng(1)
    bias = rng.standard_normal((3, 7, 5)).astype(np.float32)            # (N, T, S)
    mask = rng.random((2, 3, 1, 7, 5)) > 0.3                             # (*batch, 1, T, S)
    mask[..., 0] = True  # every query attends somewhere
    out = attention_ops.attention(q, k, v, bias=jnp.asarray(bias), mask=jnp.asarray(mask),
                                  scale=0.5, implementation=implementation)
    np.testing.assert_allclose(out, reference(q, k, v, bias, mask, 0.5), atol=1e-5)


def test_gradients_of_einsum_and_xla_agree():
    q, k, v = operands(seed=3)
    cotangent = jnp.asarray(np.random.default_rng(4).standard_normal(q.shape), jnp.float32)

    def grads(implementation):
        loss = lambda q, k, v: jnp.sum(
            attention_ops.attention(q, k, v, implementation=implementation) * cotangent)
        return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

    for ours, theirs in zip(grads("einsum"), grads("xla")):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_bfloat16_inputs_give_bfloat16_outputs_close_to_float32():
    q, k, v = operands()
    out = attention_ops.attention(*(a.astype(jnp.bfloat16) for a in (q, k, v)))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), reference(q, k, v), atol=5e-2)


def test_auto_picks_cudnn_on_gpus_for_half_precision_einsum_on_cpu():
    resolve = attention_ops.resolve_implementation
    assert resolve("auto", "cpu", jnp.float32, 32, False) == "einsum"
    assert resolve("auto", "gpu", jnp.bfloat16, 64, False) == "cudnn"
    assert resolve("auto", "gpu", jnp.float16, 32, False) == "cudnn"
    assert resolve("auto", "gpu", jnp.float32, 64, False) == "xla"      # cuDNN: half only
    assert resolve("auto", "gpu", jnp.bfloat16, 12, False) == "xla"     # head size % 8
    assert resolve("auto", "gpu", jnp.bfloat16, 256, False) == "xla"    # head size <= 128
    assert resolve("auto", "gpu", jnp.bfloat16, 64, True) == "xla"      # masks: XLA
    assert resolve("auto", "tpu", jnp.bfloat16, 64, False) == "xla"
    assert resolve("einsum", "gpu", jnp.bfloat16, 64, False) == "einsum"


def test_bad_inputs_name_what_was_expected():
    q, k, v = operands()
    with pytest.raises(ValueError, match="implementation='flash' is not one of"):
        attention_ops.attention(q, k, v, implementation="flash")
    with pytest.raises(ValueError, match="same shape"):
        attention_ops.attention(q, k, v[..., :4])
    with pytest.raises(ValueError, match="share the batch axes, the number of heads"):
        attention_ops.attention(q[..., :2, :], k, v)
    with pytest.raises(ValueError, match=r"query must be \(\*batch, T, N, H\)"):
        attention_ops.attention(q[0, 0], k, v)
