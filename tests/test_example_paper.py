"""A new paper in one file: config.imports registers a decoder that segjax/ never names."""

import importlib.util

import jax
import jax.numpy as jnp
import pytest

from segjax.models import registry

CONFIG = "experiments/example_paper/config.py"


def load_config(arg: str):
    spec = importlib.util.spec_from_file_location("example_paper_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_config_imports_register_the_new_decoder_and_the_model_builds():
    config = load_config("smoke")
    registry.import_modules(config.imports)
    assert "example_residual_unet" in registry.names("decoder")
    model = registry.build(config.model)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    outputs, _ = jax.eval_shape(lambda v: model.init_with_output(jax.random.PRNGKey(0), v), x)
    assert outputs["logits"].shape == (1, 64, 64, 11)


def test_a_missing_import_module_is_named():
    with pytest.raises(ImportError, match="config.imports: cannot import 'experiments.nope'"):
        registry.import_modules(["experiments.nope"])
