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


@pytest.mark.parametrize("name", paper_models())
def test_every_model_builds_forward_and_backward(name):
    entry = registry.get("model", name)
    model = registry.build({"name": name})
    shape = small_input_shape(entry)
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    num_classes = model.num_classes if hasattr(model, "num_classes") else None

    def loss_fn(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(2)})
        return jnp.mean(jax.nn.log_softmax(outputs["logits"])[..., 0]), outputs

    (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    logits = outputs["logits"]
    assert logits.ndim == len(shape)
    if num_classes is not None:
        assert logits.shape[-1] == num_classes
    assert np.isfinite(float(loss))
    grad_norm = sum(float(jnp.sum(g.astype(jnp.float32) ** 2))
                    for g in jax.tree_util.tree_leaves(grads))
    assert grad_norm > 0


@pytest.mark.parametrize("name", registry.names("encoder"))
def test_every_encoder_returns_features_keyed_by_stride(name):
    encoder = registry.build_part("encoder", {"name": name})
    x = jnp.ones((1, 64, 64, 3))
    features, _ = encoder.init_with_output(jax.random.PRNGKey(0), x, train=False)
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
