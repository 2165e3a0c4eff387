"""segjax.ops.conv: every formulation equals XLA's convolution, forward and both gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.ops import conv as conv_ops
from segjax.ops import conv_cpu


def _dimension_numbers(rank):
    return conv_ops.dimension_numbers(rank)


def _reference(x, kernel, **kw):
    """jax.lax.conv_general_dilated in float32 at highest precision."""
    rank = x.ndim - 2
    pads = conv_ops.explicit_padding(kw.get("padding", "SAME"), x.shape[1:-1],
                                     kernel.shape[:rank], _tuple(kw.get("strides", 1), rank),
                                     _tuple(kw.get("lhs_dilation", 1), rank),
                                     _tuple(kw.get("rhs_dilation", 1), rank))
    return jax.lax.conv_general_dilated(
        x.astype(jnp.float32), kernel.astype(jnp.float32), _tuple(kw.get("strides", 1), rank),
        pads, _tuple(kw.get("lhs_dilation", 1), rank), _tuple(kw.get("rhs_dilation", 1), rank),
        dimension_numbers=_dimension_numbers(rank),
        feature_group_count=kw.get("feature_group_count", 1),
        precision=jax.lax.Precision.HIGHEST)


def _tuple(v, rank):
    return (v,) * rank if isinstance(v, int) else tuple(v)


def _value_and_grads(fn, x, kernel, dy):
    """Output, input gradient and kernel gradient for cotangent `dy`, in one compilation."""

    @jax.jit
    def run(x, kernel, dy):
        y, vjp = jax.vjp(fn, x, kernel)
        return (y, *vjp(dy.astype(y.dtype)))

    return [np.asarray(a, np.float32) for a in run(x, kernel, dy)]


def _check(x_shape, kernel_shape, dtype=jnp.float32, impl="cpu", **kw):
    kx, kk, ky = jax.random.split(jax.random.PRNGKey(sum(x_shape) + sum(kernel_shape)), 3)
    x = jax.random.normal(kx, x_shape, jnp.float32).astype(dtype)
    kernel = (jax.random.normal(kk, kernel_shape, jnp.float32) * 0.3).astype(dtype)
    y_ref = _reference(x, kernel, **kw)
    dy = jax.random.normal(ky, y_ref.shape, jnp.float32)
    ours = lambda a, b: conv_ops.conv(a, b, impl=impl, **kw)
    ref = lambda a, b: _reference(a, b, **kw)
    got = _value_and_grads(ours, x, kernel, dy.astype(dtype))
    want = _value_and_grads(ref, x.astype(jnp.float32), kernel.astype(jnp.float32),
                            dy.astype(dtype).astype(jnp.float32))
    assert got[0].shape == want[0].shape
    # float32: rounding of sums of <= a few hundred terms; bfloat16: one output rounding
    # (8 bits of mantissa) on top of float32 accumulation.
    rel = 1e-5 if dtype == jnp.float32 else 1.5e-2
    for name, g, w in zip(("output", "input gradient", "kernel gradient"), got, want):
        scale = max(float(np.abs(w).max()), 1.0)
        np.testing.assert_allclose(g, w, rtol=0, atol=rel * scale * 4, err_msg=name)


CASES_2D = [
    # (x_shape, kernel_shape, kwargs)
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding="VALID")),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding="SAME")),
    ((2, 10, 9, 4), (3, 3, 4, 6), dict(padding=[(1, 2), (0, 1)], strides=(2, 1))),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding=1, strides=2)),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding="VALID", strides=2)),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding=2, rhs_dilation=2)),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding="VALID", rhs_dilation=2)),
    ((1, 30, 27, 2), (3, 3, 2, 3), dict(padding=12, rhs_dilation=12)),
    ((1, 30, 27, 2), (3, 3, 2, 3), dict(padding="VALID", rhs_dilation=12)),
    ((2, 9, 9, 4), (3, 3, 2, 6), dict(padding=1, feature_group_count=2)),
    ((2, 9, 9, 4), (3, 3, 1, 8), dict(padding=1, feature_group_count=4)),      # depthwise x2
    ((2, 9, 9, 4), (3, 3, 1, 4), dict(padding=2, strides=2, rhs_dilation=2,
                                      feature_group_count=4)),               # depthwise
    ((2, 9, 9, 4), (1, 1, 4, 6), dict(padding=0)),                           # pointwise
    ((2, 9, 9, 4), (1, 1, 4, 6), dict(padding=0, strides=2)),
    ((2, 9, 9, 4), (7, 7, 4, 6), dict(padding=3, strides=2)),                # resnet stem
    ((2, 8, 8, 4), (2, 2, 4, 6), dict(padding="VALID", strides=2)),          # patchify
    ((2, 5, 5, 4), (3, 3, 4, 6), dict(padding=[(2, 2), (1, 2)], lhs_dilation=2)),
    ((2, 5, 5, 4), (3, 3, 4, 6), dict(padding=[(1, 1), (1, 1)], lhs_dilation=(2, 1),
                                      rhs_dilation=2)),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding=4)),                           # negative ig pad
]


@pytest.mark.parametrize("x_shape,kernel_shape,kw", CASES_2D)
def test_cpu_formulation_matches_xla_2d(x_shape, kernel_shape, kw):
    _check(x_shape, kernel_shape, **kw)


def _spec_and_operands(x_shape, kernel_shape, kw):
    rank = len(x_shape) - 2
    strides, lhs, rhs = (_tuple(kw.get(k, 1), rank) for k in
                         ("strides", "lhs_dilation", "rhs_dilation"))
    pads = conv_ops.explicit_padding(kw.get("padding", "SAME"), x_shape[1:-1],
                                     kernel_shape[:rank], strides, lhs, rhs)
    spec = conv_cpu.ConvSpec(strides, pads, lhs, rhs, kw.get("feature_group_count", 1))
    kx, kk, ky = jax.random.split(jax.random.PRNGKey(len(x_shape) + sum(kernel_shape)), 3)
    x = jax.random.normal(kx, x_shape)
    kernel = jax.random.normal(kk, kernel_shape)
    y = _reference(x, kernel, **kw)
    return spec, x, kernel, jax.random.normal(ky, y.shape)


@pytest.mark.parametrize("x_shape,kernel_shape,kw", [
    ((2, 11, 9, 4), (3, 3, 4, 6), dict(padding="VALID")),                 # 9 rows: 2+2+2+2+1
    ((2, 10, 9, 4), (3, 3, 4, 6), dict(padding=[(1, 2), (0, 1)], strides=(2, 1))),
    ((1, 30, 27, 2), (3, 3, 2, 3), dict(padding=12, rhs_dilation=12)),
    ((2, 5, 5, 4), (3, 3, 4, 6), dict(padding=[(2, 2), (1, 2)], lhs_dilation=2)),
    ((2, 9, 9, 4), (7, 7, 4, 6), dict(padding=3, strides=2)),
    ((1, 7, 7, 8, 3), (3, 3, 3, 3, 4), dict(padding="SAME", strides=(2, 1, 2))),
    ((1, 7, 6, 9, 3), (3, 2, 3, 3, 4), dict(padding="SAME", strides=(2, 2, 1),
                                            rhs_dilation=(1, 1, 2))),
    ((2, 10, 9, 4), (2, 3, 4, 6), dict(padding=[(0, 1), (2, 1)], rhs_dilation=(2, 3))),
    ((2, 9, 4), (3, 4, 6), dict(padding=1)),                                # 1D: gathered
])
@pytest.mark.parametrize("rows", [1, 2, 4])
def test_both_weight_gradient_formulations_match_xla(x_shape, kernel_shape, kw, rows):
    """The column-block formulation in blocks of 1, 2 or 4 output rows (plus a shorter
    last block), with the last axis's taps gathered or applied as shifts of dy (where its
    stride allows), and the per-offset one, all equal XLA's kernel gradient."""
    spec, x, kernel, dy = _spec_and_operands(x_shape, kernel_shape, kw)
    _, vjp = jax.vjp(lambda k: _reference(x, k, **kw), kernel)
    want = np.asarray(vjp(dy)[0])
    scale = float(np.abs(want).max())
    shift_choices = [False] + ([True] if conv_cpu.can_shift_last_axis(spec) else [])
    for shift in shift_choices:
        got = conv_cpu._column_block_weight_gradient(x, dy, kernel.shape, spec, rows=rows,
                                                     shift_last_axis=shift)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale,
                                   err_msg=f"column blocks, shifted dy {shift}")
    got = conv_cpu._per_offset_weight_gradient(x, dy, kernel.shape, spec)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale, err_msg="per offset")


def test_shifted_weight_gradient_needs_a_unit_last_stride():
    spec, x, kernel, dy = _spec_and_operands((2, 9, 9, 4), (3, 3, 4, 6),
                                             dict(padding=1, strides=2))
    with pytest.raises(ValueError, match="last stride of 1"):
        conv_cpu._column_block_weight_gradient(x, dy, kernel.shape, spec, shift_last_axis=True)


def test_weight_gradient_formulation_follows_layer_width(monkeypatch):
    monkeypatch.setattr(conv_cpu, "_column_block_weight_gradient", lambda *a, **k: "column")
    monkeypatch.setattr(conv_cpu, "_per_offset_weight_gradient", lambda *a, **k: "per-offset")
    monkeypatch.setattr(conv_cpu, "_depthwise_weight_gradient", lambda *a, **k: "depthwise")
    monkeypatch.setattr(conv_cpu.winograd, "weight_gradient3x3", lambda *a, **k: "winograd")
    spec = conv_cpu.ConvSpec((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1))
    limit = conv_cpu.COLUMN_BLOCK_MAX_CHANNELS
    wide = conv_cpu.WINOGRAD_MIN_CHANNELS
    x, dy = jnp.zeros((1, 4, 4, wide)), jnp.zeros((1, 4, 4, wide))

    def formulation(kernel_shape, spec=spec):
        return conv_cpu.weight_gradient(x[..., :kernel_shape[-2] * spec.groups],
                                        dy[..., :kernel_shape[-1]], kernel_shape, spec)

    assert formulation((3, 3, 64, limit)) == "column"
    assert formulation((3, 3, wide, 64)) == "column"
    assert formulation((3, 3, limit + 1, wide)) == "per-offset"
    assert formulation((3, 3, 1, 64), spec._replace(groups=64)) == "depthwise"
    assert formulation((3, 3, 1, 64), spec._replace(groups=64, strides=(2, 2))) == "per-offset"
    assert formulation((3, 3, wide, wide)) == "winograd"
    assert formulation((3, 3, wide, wide), spec._replace(strides=(2, 2))) == "per-offset"
    assert formulation((5, 5, wide, wide), spec._replace(padding=((2, 2), (2, 2)))) \
        == "per-offset"


CASES_3D = [
    ((1, 6, 7, 8, 3), (3, 3, 3, 3, 4), dict(padding="VALID")),
    ((1, 6, 7, 8, 3), (3, 3, 3, 3, 4), dict(padding="SAME", strides=(1, 2, 2))),
    ((1, 6, 7, 8, 3), (3, 3, 3, 1, 6), dict(padding=2, rhs_dilation=2, feature_group_count=3)),
    ((1, 4, 4, 4, 3), (3, 3, 3, 3, 2), dict(padding=2, lhs_dilation=2)),
]


@pytest.mark.parametrize("x_shape,kernel_shape,kw", CASES_3D)
def test_cpu_formulation_matches_xla_3d(x_shape, kernel_shape, kw):
    _check(x_shape, kernel_shape, **kw)


# The backward orders its two gradients by which operand is larger (decision 17).
ORDERING_CASES = [
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding="VALID")),                  # dx waits for dw
    ((1, 4, 5, 8), (3, 3, 8, 16), dict(padding=1, strides=2)),             # dw waits for dx
    ((1, 6, 6, 256), (3, 3, 256, 256), dict(padding="SAME")),              # ... by Winograd
]


@pytest.mark.parametrize("x_shape,kernel_shape,kw", ORDERING_CASES)
def test_both_gradient_orders_match_xla(x_shape, kernel_shape, kw):
    _check(x_shape, kernel_shape, **kw)


@pytest.mark.parametrize("x_shape,kernel_shape,kw", ORDERING_CASES)
def test_gradient_of_either_operand_alone_matches_xla(x_shape, kernel_shape, kw):
    """With symbolic zeros the backward computes only the cotangent that is asked for."""
    _, x, kernel, dy = _spec_and_operands(x_shape, kernel_shape, kw)

    def grads(conv):
        of_kernel = jax.jit(jax.grad(lambda k: jnp.vdot(conv(x, k), dy)))(kernel)
        of_input = jax.jit(jax.grad(lambda a: jnp.vdot(conv(a, kernel), dy)))(x)
        return of_kernel, of_input

    got = grads(lambda a, b: conv_ops.conv(a, b, impl="cpu", **kw))
    want = grads(lambda a, b: _reference(a, b, **kw))
    for name, g, w in zip(("kernel gradient", "input gradient"), got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=4e-5 * float(jnp.abs(w).max()),
                                   err_msg=name)


def test_zero_after_is_an_exact_zero_of_the_anchor_dtype():
    anchor = jnp.array([[-jnp.inf, 1.0], [2.0, 3.0]], jnp.bfloat16)
    for first in (-jnp.inf, jnp.inf, -0.0, 3.5, -1e30):
        zero = conv_cpu._zero_after(anchor.at[0, 0].set(first))
        assert zero.dtype == jnp.bfloat16 and float(zero) == 0.0, first
    np.testing.assert_array_equal(conv_cpu._zeros_after(anchor, (2, 3), jnp.float32),
                                  np.zeros((2, 3), np.float32))


def _wide_stack_temporaries(layers: int, channels: int = 256) -> tuple[float, float]:
    """Compiled temporaries, in kernels, of a donated SGD step and of the forward pass of
    `layers` 3x3 convolutions + ReLU at `channels` (Winograd) on an 8x8 input."""
    keys = jax.random.split(jax.random.PRNGKey(0), layers)
    params = [jax.random.normal(k, (3, 3, channels, channels)) * 0.01 for k in keys]
    x = jnp.ones((1, 8, 8, channels))

    def forward(params, x):
        for kernel in params:
            x = jax.nn.relu(conv_ops.conv(x, kernel, padding="SAME", impl="cpu"))
        return x

    def sgd_step(params, x):
        grads = jax.grad(lambda p: jnp.mean(forward(p, x) ** 2))(params)
        return [p - 0.1 * g for p, g in zip(params, grads)]

    def temporaries(fn, **jit_kw):
        compiled = jax.jit(fn, **jit_kw).lower(params, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes / (params[0].size * 4)

    return temporaries(sgd_step, donate_argnums=0), temporaries(forward)


def test_wide_layers_hold_no_kernel_sized_buffers_across_the_step():
    """Per extra 256-channel layer: under one kernel of temporaries in a train step, none in
    the forward. Before decision 17, XLA kept each layer's forward Winograd transform (16/9
    of a kernel) and its zero-filled weight-gradient stack through the backward, and hoisted
    every forward transform to the start of the program: 2.8 and 1.8 kernels per layer."""
    (train_2, forward_2), (train_4, forward_4) = (_wide_stack_temporaries(n) for n in (2, 4))
    assert (train_4 - train_2) / 2 < 1.0
    assert (forward_4 - forward_2) / 2 < 0.25


@pytest.mark.parametrize("x_shape,kernel_shape,kw", [
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding="VALID")),
    ((2, 9, 9, 4), (3, 3, 4, 6), dict(padding=1, strides=2)),
    ((2, 9, 9, 4), (3, 3, 1, 4), dict(padding=1, feature_group_count=4)),
    ((2, 9, 9, 4), (1, 1, 4, 6), dict(padding=0)),
])
def test_bfloat16_matches_float32_reference(x_shape, kernel_shape, kw):
    _check(x_shape, kernel_shape, dtype=jnp.bfloat16, **kw)


def test_bfloat16_in_bfloat16_out():
    x = jnp.ones((1, 6, 6, 2), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 2, 3), jnp.bfloat16)
    y, vjp = jax.vjp(lambda a, b: conv_ops.conv(a, b, padding="VALID", impl="cpu"), x, kernel)
    dx, dk = vjp(jnp.ones_like(y))
    assert y.dtype == dx.dtype == dk.dtype == jnp.bfloat16
    # Hand-computed: every output sums 3*3*2 ones; every kernel tap sees 4*4 output pixels.
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.full((1, 4, 4, 3), 18.0))
    np.testing.assert_array_equal(np.asarray(dk, np.float32), np.full((3, 3, 2, 3), 16.0))
    # The corner input pixel feeds one output pixel through 3 output channels.
    assert float(dx[0, 0, 0, 0]) == 3.0 and float(dx[0, 2, 2, 0]) == 27.0


@pytest.mark.parametrize("kernel_size,strides,padding,output_padding", [
    (2, 2, 0, 0),          # U-Net's up-convolution: the matmul + depth-to-space path
    ((2, 3), (2, 3), 0, 0),
    (3, 2, 1, 1),          # overlapping: a stride-dilated convolution
])
def test_conv_transpose_matches_native(kernel_size, strides, padding, output_padding):
    kx, kk, ky = jax.random.split(jax.random.PRNGKey(1), 3)
    ks = _tuple(kernel_size, 2)
    x = jax.random.normal(kx, (2, 5, 4, 3))
    kernel = jax.random.normal(kk, ks + (3, 4))
    fn = lambda impl: (lambda a, b: conv_ops.conv_transpose(
        a, b, strides=strides, padding=padding, output_padding=output_padding, impl=impl))
    y_native = fn("native")(x, kernel)
    dy = jax.random.normal(ky, y_native.shape)
    got = _value_and_grads(fn("cpu"), x, kernel, dy)
    want = _value_and_grads(fn("native"), x, kernel, dy)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_patch_transpose_gradients_match_native_3d(dtype):
    """The written-out backward of the matmul + depth-to-space path, in 3D (No New-Net's
    up-convolutions) and bfloat16, against XLA's stride-dilated convolution."""
    kx, kk, ky = jax.random.split(jax.random.PRNGKey(2), 3)
    x = jax.random.normal(kx, (2, 3, 4, 2, 5)).astype(dtype)
    kernel = jax.random.normal(kk, (2, 2, 2, 5, 3)).astype(dtype)
    fn = lambda impl: (lambda a, b: conv_ops.conv_transpose(a, b, strides=2, impl=impl))
    dy = jax.random.normal(ky, (2, 6, 8, 4, 3)).astype(dtype)
    got = _value_and_grads(fn("cpu"), x, kernel, dy)
    want = _value_and_grads(fn("native"), x.astype(jnp.float32), kernel.astype(jnp.float32),
                            dy.astype(jnp.float32))
    tolerance = 1e-4 if dtype == jnp.float32 else 0.1
    for name, g, w in zip(("output", "input gradient", "kernel gradient"), got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=tolerance * max(1.0, np.abs(w).max()) / 10,
                                   err_msg=name)


def test_patch_transpose_is_pytorch_conv_transpose():
    # out[s*i + a, s*j + b, o] = sum_c x[i, j, c] * k[a, b, c, o], checked by hand on 1 channel.
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    kernel = jnp.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(2, 2, 1, 1)
    y = conv_cpu.patch_transpose(x, kernel)[0, :, :, 0]
    np.testing.assert_array_equal(np.asarray(y), [[1, 10, 2, 20], [100, 1000, 200, 2000],
                                                  [3, 30, 4, 40], [300, 3000, 400, 4000]])


def test_unpadded_forward_is_rewritten_padded():
    """The CPU forward of a VALID conv runs XLA's convolution with non-zero padding."""
    x = jnp.zeros((1, 9, 9, 2))
    kernel = jnp.zeros((3, 3, 2, 2))
    hlo = jax.jit(lambda a, b: conv_ops.conv(a, b, padding="VALID", impl="cpu")) \
        .lower(x, kernel).as_text()
    assert "padding = [[0, 1], [0, 1]]" in hlo or "pad = [[0, 1], [0, 1]]" in hlo, hlo


def test_implementation_selection_and_errors():
    assert conv_ops.resolve_implementation("native") == "native"
    expected = "cpu" if jax.default_backend() == "cpu" else "native"
    assert conv_ops.resolve_implementation("auto") == expected
    previous = conv_ops.implementation()
    try:
        conv_ops.set_default_implementation("native")
        assert conv_ops.resolve_implementation(None) == "native"
    finally:
        conv_ops.set_default_implementation(previous)
    with pytest.raises(ValueError, match=r"'fast' is not one of .*config.runtime.conv_impl"):
        conv_ops.set_default_implementation("fast")
    x, kernel = jnp.zeros((1, 5, 5, 4)), jnp.zeros((3, 3, 3, 2))
    with pytest.raises(ValueError, match="conv implementation 'gpu'"):
        conv_ops.conv(x, jnp.zeros((3, 3, 4, 2)), impl="gpu")
    with pytest.raises(ValueError, match="input has 4 channels.*expects 3"):
        conv_ops.conv(x, kernel)
    with pytest.raises(ValueError, match="padding 'FULL'"):
        conv_ops.conv(x, jnp.zeros((3, 3, 4, 2)), padding="FULL")
    with pytest.raises(ValueError, match=r"strides=\(1, 2, 3\) needs 2 entries"):
        conv_ops.conv(x, jnp.zeros((3, 3, 4, 2)), strides=(1, 2, 3))


def test_unet_loss_and_gradients_match_native():
    """The paper's U-Net (valid convs, small width) trains identically on both formulations."""
    from segjax.models import registry  # pylint: disable=import-outside-toplevel

    model = registry.build({"name": "unet", "num_classes": 2, "width": 4, "depth": 1,
                            "padding": "valid"})
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 20, 20, 1))  # depth 1: 20 -> 4
    variables = model.init(jax.random.PRNGKey(1), x)
    labels = jax.random.randint(jax.random.PRNGKey(2), (2, 4, 4), 0, 2)

    def loss(params, impl):
        previous = conv_ops.implementation()
        conv_ops.set_default_implementation(impl)
        try:
            logits = model.apply({"params": params}, x)["logits"]
        finally:
            conv_ops.set_default_implementation(previous)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))

    results = {impl: jax.jit(jax.value_and_grad(lambda p, i=impl: loss(p, i)))(
        variables["params"]) for impl in ("cpu", "native")}
    (loss_cpu, grads_cpu), (loss_native, grads_native) = results["cpu"], results["native"]
    np.testing.assert_allclose(loss_cpu, loss_native, rtol=1e-5)
    flat_cpu = jax.tree_util.tree_leaves_with_path(grads_cpu)
    flat_native = dict(jax.tree_util.tree_leaves_with_path(grads_native))
    assert len(flat_cpu) == 16  # kernel and bias of 6 convs, 1 up-conv, the classifier
    for path, g in flat_cpu:
        w = flat_native[path]
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * float(jnp.abs(w).max()) + 1e-7,
                                   err_msg=jax.tree_util.keystr(path))
