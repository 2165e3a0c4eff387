"""Every registered model builds, runs forward and backward; registry errors are clear."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry


def small_input_shape(entry: registry.Entry) -> tuple[int, ...]:
    if entry.test_input_shape:
        return entry.test_input_shape
    batch, *spatial, channels = entry.input_shape
    return (1, *([64] * len(spatial)), channels)


def paper_models():
    return [name for name in registry.names("model") if registry.get("model", name).input_shape]


def forward_backward(model, x):
    """Variables, the loss, the outputs and the gradients of one forward+backward."""
    variables = model.init(jax.random.PRNGKey(0), x, train=False)

    def loss_fn(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(2)})
        logits = outputs["logits"]
        if logits.shape[-1] == 1:  # one class (binary): log_softmax would be constant
            return jnp.mean(jax.nn.log_sigmoid(logits)), outputs
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0]), outputs

    (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    return variables, loss, outputs, grads


def check_outputs(model, shape, outputs, variables, grads):
    logits = outputs["logits"]
    assert logits.ndim == len(shape)
    if hasattr(model, "num_classes"):
        assert logits.shape[-1] == model.num_classes
    assert set(outputs) <= {"logits", "aux_logits", "center", "offset"}
    grad_shapes = jax.tree_util.tree_map(lambda g: g.shape, grads)
    param_shapes = jax.tree_util.tree_map(lambda p: p.shape, variables["params"])
    assert grad_shapes == param_shapes


@pytest.mark.parametrize("name", paper_models())
def test_every_model_traces_forward_and_backward(name):
    """Abstract (shape-only) forward and backward of every registered model: fast."""
    entry = registry.get("model", name)
    model = registry.build({"name": name})
    shape = small_input_shape(entry)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables, loss, outputs, grads = jax.eval_shape(lambda v: forward_backward(model, v), x)
    assert loss.shape == ()
    check_outputs(model, shape, outputs, variables, grads)


@pytest.mark.slow
@pytest.mark.parametrize("name", paper_models())
def test_every_model_runs_forward_and_backward(name):
    """Compiled forward and backward of every registered model at its paper defaults."""
    entry = registry.get("model", name)
    model = registry.build({"name": name})
    shape = small_input_shape(entry)
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    variables, loss, outputs, grads = jax.jit(lambda v: forward_backward(model, v))(x)
    check_outputs(model, shape, outputs, variables, grads)
    assert np.isfinite(float(loss))
    grad_norm = sum(float(jnp.sum(g.astype(jnp.float32) ** 2))
                    for g in jax.tree_util.tree_leaves(grads))
    assert grad_norm > 0


def test_a_small_model_runs_forward_and_backward():
    model = registry.build({"name": "unet", "width": 4, "depth": 2})
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 92, 92, 1))
    variables, loss, outputs, grads = jax.jit(lambda v: forward_backward(model, v))(x)
    check_outputs(model, x.shape, outputs, variables, grads)
    assert outputs["logits"].shape == (1, 52, 52, 2)
    assert np.isfinite(float(loss))
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("name", registry.names("encoder"))
def test_every_encoder_returns_features_keyed_by_stride(name):
    encoder = registry.build_part("encoder", {"name": name})
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    features, _ = jax.eval_shape(
        lambda v: encoder.init_with_output(jax.random.PRNGKey(0), v, train=False), x)
    assert isinstance(features, dict) and features
    for stride, value in features.items():
        assert 64 % stride == 0 and value.shape[1] == 64 // stride, (stride, value.shape)


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(KeyError, match=r"unknown model 'unett'.*unet"):
        registry.build({"name": "unett"})


def test_unknown_option_names_the_field():
    with pytest.raises(TypeError, match=r"'unet' has no option\(s\) \['widht'\]"):
        registry.build({"name": "unet", "widht": 8})


def test_register_rejects_a_second_factory_under_the_same_name():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("model", "unet")(lambda: None)


def test_models_listing_prints_name_count_and_paper(capsys):
    from segjax.models.__main__ import main
    main()
    lines = capsys.readouterr().out.splitlines()
    unet_line = next(line for line in lines if line.split()[0] == "unet")
    assert "31,030,658" in unet_line and "1505.04597" in unet_line
