"""Position-sensitive axial attention against a slow, explicit-loop reference."""

import itertools

import jax
import numpy as np
import pytest

from segjax.models.axial_attention import AxialAttention, band_mask, relative_offsets

EPS = 1e-5


def _batch_norm(values, mean, var, scale, bias):
    return (values - mean) / np.sqrt(var + EPS) * scale + bias


def reference_axial_attention(variables, x, *, axis, heads, span, train):
    """The layer written out with loops over images, columns, positions, heads and offsets.

    Batch statistics (train=True) are gathered pair by pair over the valid
    (image, column, query, key) entries, exactly as the paper defines them.
    """
    params, stats = variables["params"], variables["batch_stats"]
    kernel = np.asarray(params["qkv"]["kernel"])[0, 0]
    x = np.asarray(x, np.float64)
    if axis == 1:
        x = x.transpose(0, 2, 1, 3)   # (N, W, H, C): columns of the height axis
    images, columns, length, _ = x.shape
    qkv = x @ kernel
    if train:
        mean, var = qkv.mean(axis=(0, 1, 2)), qkv.var(axis=(0, 1, 2))
    else:
        mean, var = stats["qkv_bn"]["mean"], stats["qkv_bn"]["var"]
    qkv = _batch_norm(qkv, mean, var, params["qkv_bn"]["scale"], params["qkv_bn"]["bias"])
    value_features = kernel.shape[1] // 2
    query_features = value_features // 2
    dq, dv = query_features // heads, value_features // heads
    q = qkv[..., :query_features].reshape(images, columns, length, heads, dq)
    k = qkv[..., query_features:2 * query_features].reshape(images, columns, length, heads, dq)
    v = qkv[..., 2 * query_features:].reshape(images, columns, length, heads, dv)
    tables = {name: np.asarray(params[name], np.float64)
              for name in ("query_rpe", "key_rpe", "value_rpe")}
    radius = (tables["query_rpe"].shape[0] - 1) // 2

    def table_row(name, p, o):
        return tables[name][min(max(o - p, -radius), radius) + radius]

    def keys_of(p):
        return [o for o in range(length) if span is None or abs(o - p) <= span // 2]

    cells = list(itertools.product(range(images), range(columns), range(length), range(heads)))
    terms = {}
    for n, c, p, h in cells:
        for o in keys_of(p):
            terms[n, c, p, h, o] = (
                sum(q[n, c, p, h, d] * k[n, c, o, h, d] for d in range(dq)),
                sum(q[n, c, p, h, d] * table_row("query_rpe", p, o)[d] for d in range(dq)),
                sum(k[n, c, o, h, d] * table_row("key_rpe", p, o)[d] for d in range(dq)))
    bn = params["similarity_bn"]
    logits = {}
    for h in range(heads):
        entries = [key for key in terms if key[3] == h]
        for t in range(3):
            values = np.array([terms[key][t] for key in entries])
            if train:
                mean, var = values.mean(), values.var()
            else:
                mean = stats["similarity_bn"]["mean"][t, h]
                var = stats["similarity_bn"]["var"][t, h]
            for key, value in zip(entries, values):
                logits[key] = logits.get(key, 0.0) + _batch_norm(
                    value, mean, var, bn["scale"][t, h], bn["bias"][t, h])

    content = np.zeros((images, columns, length, heads, dv))
    position = np.zeros_like(content)
    for n, c, p, h in cells:
        keys = keys_of(p)
        scores = np.array([logits[n, c, p, h, o] for o in keys])
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        for w, o in zip(weights, keys):
            content[n, c, p, h] += w * v[n, c, o, h]
            position[n, c, p, h] += w * table_row("value_rpe", p, o)
    bn = params["output_bn"]
    out = 0.0
    for t, retrieved in enumerate((content, position)):
        if train:
            mean, var = retrieved.mean(axis=(0, 1, 2)), retrieved.var(axis=(0, 1, 2))
        else:
            mean, var = stats["output_bn"]["mean"][t], stats["output_bn"]["var"][t]
        out = out + _batch_norm(retrieved, mean, var, bn["scale"][t], bn["bias"][t])
    out = out.reshape(images, columns, length, heads * dv)
    return out.transpose(0, 2, 1, 3) if axis == 1 else out


def random_variables(model, x, seed):
    """Every parameter and running statistic drawn at random (so no term is trivial)."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        if name == "var":
            return rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
        if name == "scale":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
        return (0.5 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("span", [None, 3])
@pytest.mark.parametrize("train", [False, True])
def test_matches_loop_reference(axis, span, train):
    heads = 2
    x = np.random.default_rng(1).standard_normal((2, 5, 4, 6)).astype(np.float32)
    model = AxialAttention(features=8, axis=axis, num_heads=heads, span=span)
    variables = random_variables(model, x, seed=axis * 10 + (span or 0))
    out = model.apply(variables, x, train=train, mutable=["batch_stats"])[0]
    expected = reference_axial_attention(variables, x, axis=axis, heads=heads, span=span,
                                         train=train)
    assert out.shape == (2, 5, 4, 8)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=2e-4, atol=2e-4)


def test_clipped_table_on_a_longer_input():
    """A table for length 3 (5 offsets) applied to length 6: outer offsets are clipped."""
    x = np.random.default_rng(2).standard_normal((1, 3, 6, 4)).astype(np.float32)
    model = AxialAttention(features=4, axis=2, num_heads=1, max_length=3)
    variables = random_variables(model, x, seed=3)
    assert variables["params"]["query_rpe"].shape == (5, 2)
    out = model.apply(variables, x, train=False)
    expected = reference_axial_attention(variables, x, axis=2, heads=1, span=None, train=False)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=2e-4, atol=2e-4)


def test_table_sizes_and_parameter_count():
    """(2L - 1) offsets for a global axis of length L, m for a local span m."""
    x = np.zeros((1, 9, 7, 16), np.float32)
    variables = jax.eval_shape(AxialAttention(32, axis=1, num_heads=8).init,
                               jax.random.PRNGKey(0), x)
    params = variables["params"]
    assert params["query_rpe"].shape == (17, 2)         # 2 * 9 - 1 offsets, 16 / 8 per head
    assert params["value_rpe"].shape == (17, 4)         # value depth 32 / 8 per head
    assert params["similarity_bn"]["scale"].shape == (3, 8)
    assert params["output_bn"]["scale"].shape == (2, 8, 4)
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))
    # the official layer's count: qkv 16 x 64, BNs 2x64 + 2x24 + 2x64, relative 8 x 17
    assert count == 16 * 64 + 128 + 48 + 128 + 8 * 17
    local = jax.eval_shape(AxialAttention(32, axis=2, span=5).init, jax.random.PRNGKey(0), x)
    assert local["params"]["key_rpe"].shape == (5, 2)


def test_helpers_and_errors():
    assert relative_offsets(3, 1).tolist() == [[1, 2, 2], [0, 1, 2], [0, 0, 1]]
    assert band_mask(4, None) is None
    assert band_mask(4, 3).sum() == 10
    x = np.zeros((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="span must be a positive odd"):
        AxialAttention(8, span=4).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="axis must be 1"):
        AxialAttention(8, axis=3).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        AxialAttention(12, num_heads=8).init(jax.random.PRNGKey(0), x)
