"""The one scaled dot-product attention of segjax, with a formulation per backend.

    out = attention(query, key, value, bias=None, mask=None, scale=None)

`query` is (*batch, T, N, H): any leading batch axes, T query positions, N
heads of H features; `key` and `value` are (*batch, S, N, H) (the same batch
axes and heads, S key positions); the result is (*batch, T, N, H), the layout
of `jax.nn.dot_product_attention`, so a Dense projection reshaped to
(..., N, H) feeds it without a transpose. `bias` (added to the logits) and
`mask` (boolean, True = attend) broadcast against the logits'
(*batch, N, T, S). `scale` defaults to 1 / sqrt(H). Every transformer block
in segjax (Mix Transformer, ViT, axial attention) calls this function, so the
formulation is chosen here, in one place, as `segjax.ops.conv` does for
convolutions.

Implementations (`implementation=`):

- "xla": `jax.nn.dot_product_attention(implementation='xla')`: two einsums and
  a float32 softmax.
- "cudnn": `jax.nn.dot_product_attention(implementation='cudnn')`, the fused
  (flash) cuDNN kernel: GPUs only, float16/bfloat16 inputs, head sizes that
  are multiples of 8 up to 128, no mask (a bias is fine).
- "einsum": the same mathematics written out: the query is scaled before the
  first einsum (T x H multiplications instead of T x S), the logits are
  computed in float32 (`preferred_element_type`), a float32 softmax, the
  second einsum in the input dtype.
- "auto" (default): "cudnn" on a GPU when the inputs qualify (above),
  "einsum" on CPU, "xla" otherwise. JAX's own default (`implementation=None`)
  is its XLA path on every backend, including GPUs, which is why "auto" asks
  for cuDNN by name.

On CPU "einsum" is the faster formulation, most of all forward+backward: the XLA
path vmaps its dots over head groups and scales the T x S logits, where the einsum
form scales the T x H query (timings in docs/transformers.md, reproduced by
`experiments/bench_attention.py`). Both agree to float32 rounding
(tests/ops/test_attention.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "einsum")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def cudnn_supports(dtype, head_size: int, has_mask: bool) -> bool:
    """Whether cuDNN's fused attention takes these inputs (the "auto" rule on GPUs)."""
    return (any(np.dtype(dtype) == np.dtype(d) for d in _CUDNN_DTYPES)
            and head_size % 8 == 0 and head_size <= 128 and not has_mask)


def resolve_implementation(implementation: str, backend: str, dtype, head_size: int,
                           has_mask: bool) -> str:
    """The formulation a call runs on `backend` ('cpu', 'gpu', 'tpu') for these inputs."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention: implementation={implementation!r} is not one of "
                         f"{IMPLEMENTATIONS}")
    if implementation != "auto":
        return implementation
    if backend in ("gpu", "cuda") and cudnn_supports(dtype, head_size, has_mask):
        return "cudnn"
    return "einsum" if backend == "cpu" else "xla"


def _check_shapes(query, key, value) -> None:
    if query.ndim < 3:
        raise ValueError(f"attention: query must be (*batch, T, N, H), got shape {query.shape}")
    if key.shape != value.shape:
        raise ValueError(f"attention: key {key.shape} and value {value.shape} must have the "
                         "same shape (*batch, S, N, H)")
    if key.ndim != query.ndim or key.shape[:-3] != query.shape[:-3] \
            or key.shape[-2:] != query.shape[-2:]:
        raise ValueError(f"attention: query {query.shape} and key {key.shape} must share the "
                         "batch axes, the number of heads N and the head size H")


def _einsum_attention(query, key, value, bias, mask, scale):
    query = query * jnp.asarray(scale, query.dtype)
    logits = jnp.einsum("...tnh,...snh->...nts", query, key,
                        preferred_element_type=jnp.float32)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
    return jnp.einsum("...nts,...snh->...tnh", weights, value)


def _as_four_dimensional(array, batch_shape, name: str):
    """(*batch, N, T, S)-broadcastable bias/mask as (B, N, T, S)-broadcastable, for jax.nn."""
    if array is None:
        return None
    array = jnp.asarray(array)
    full = len(batch_shape) + 3
    if array.ndim > full:
        raise ValueError(f"attention: {name} of shape {array.shape} has more axes than the "
                         f"logits (*batch, N, T, S) ({full})")
    array = array.reshape((1,) * (full - array.ndim) + array.shape)
    lead = array.shape[:len(batch_shape)]
    flat = int(np.prod(lead)) if all(n == m for n, m in zip(lead, batch_shape)) else None
    if flat is None:
        array = jnp.broadcast_to(array, tuple(batch_shape) + array.shape[len(batch_shape):])
        flat = int(np.prod(batch_shape))
    return array.reshape((flat,) + array.shape[len(batch_shape):])


def _jax_attention(query, key, value, bias, mask, scale, implementation):
    batch_shape = query.shape[:-3]
    flat = lambda t: t.reshape((-1,) + t.shape[-3:])
    out = jax.nn.dot_product_attention(
        flat(query), flat(key), flat(value),
        bias=_as_four_dimensional(bias, batch_shape, "bias"),
        mask=_as_four_dimensional(mask, batch_shape, "mask"),
        scale=scale, implementation=implementation)
    return out.reshape(query.shape)


def attention(query: jax.Array, key: jax.Array, value: jax.Array, *,
              bias: jax.Array | None = None, mask: jax.Array | None = None,
              scale: float | None = None, implementation: str = "auto") -> jax.Array:
    """softmax(scale * q k^T + bias, masked) v over heads; see the module docstring."""
    _check_shapes(query, key, value)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    chosen = resolve_implementation(implementation, jax.default_backend(), query.dtype,
                                    query.shape[-1], mask is not None)
    if chosen == "einsum":
        return _einsum_attention(query, key, value, bias, mask, scale)
    if chosen == "cudnn" and implementation == "auto":
        try:
            return _jax_attention(query, key, value, bias, mask, scale, "cudnn")
        except (NotImplementedError, RuntimeError, ValueError):
            # This GPU or cuDNN version lacks the fused kernel for these inputs.
            return _jax_attention(query, key, value, bias, mask, scale, "xla")
    return _jax_attention(query, key, value, bias, mask, scale, chosen)
