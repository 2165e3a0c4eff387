"""configs/panoptic_deeplab_isbi.py: every variant builds a panoptic model whose outputs the
panoptic losses and the evaluator read; the ISBI data become panoptic examples."""

import importlib

import jax
import jax.numpy as jnp
import pytest

from segjax import losses
from segjax.data import sources
from segjax.models import build


def get_config(arg: str = ""):
    return importlib.import_module("configs.panoptic_deeplab_isbi").get_config(arg)


@pytest.mark.parametrize("arg", ["", "cpu", "axial", "smoke", "cpu,smoke"])
def test_variants_build_panoptic_models(arg):
    config = get_config(arg)
    assert tuple(config.data.panoptic.thing_classes) == (1,)
    assert [name for name, _, _ in losses.loss_terms(config.loss)] == [
        "bootstrapped_cross_entropy", "center_mse", "offset_l1"]
    assert tuple(config.loss.weights) == (1.0, 200.0, 0.01)
    model = build(config.model)
    x = jax.ShapeDtypeStruct((1, *config.data.crop, config.data.image_channels), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    outputs = jax.eval_shape(model.apply, variables, x)
    assert outputs["logits"].shape == (1, *config.data.crop, 2)
    assert outputs["center"].shape == (1, *config.data.crop, 1)
    assert outputs["offset"].shape == (1, *config.data.crop, 2)


def test_unknown_argument():
    with pytest.raises(ValueError, match="unknown argument"):
        get_config("gpu")


def test_isbi_slices_become_panoptic_examples(isbi_root):
    config = get_config("smoke")
    config.data.root = str(isbi_root)
    example = sources.make_source(config.data, config.data.val_split)[0]
    assert example["instance"].max() > 50 and example["label"].max() == 1
