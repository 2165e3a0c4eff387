"""The paper's U-Net: exact parameter count, Figure 1's shapes, variants, errors."""

import jax
import jax.numpy as jnp
import pytest

from segjax.models import build
from segjax.models.segmenter import count_params
from segjax.models.unet import valid_output_size


def shapes(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda v: model.init_with_output(jax.random.PRNGKey(0), v), x)


def test_paper_unet_has_31030658_parameters_and_572_gives_388():
    # 23 conv layers, biased, 1 input channel, 2 classes (Ronneberger et al. 2015, Fig. 1).
    outputs, variables = shapes(build({"name": "unet"}), (1, 572, 572, 1))
    assert count_params(variables) == 31_030_658
    assert outputs["logits"].shape == (1, 388, 388, 2)


def test_paper_unet_has_23_convolutions():
    _, variables = shapes(build({"name": "unet"}), (1, 572, 572, 1))
    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
               if path[-1].key == "kernel"]
    assert len(kernels) == 23


@pytest.mark.parametrize("size,expected", [(572, 388), (188, 4), (636, 452), (252, 68)])
def test_valid_output_size(size, expected):
    assert valid_output_size(size) == expected


def test_invalid_valid_size_error_lists_valid_sizes():
    with pytest.raises(ValueError, match=r"input size 512 .* valid input sizes include 188, 204"):
        build({"name": "unet"}).init(jax.random.PRNGKey(0), jnp.ones((1, 512, 512, 1)))


def test_padded_variant_keeps_size_and_has_batch_norm():
    model = build({"name": "unet", "padding": "same", "norm": "batch", "width": 4,
                   "num_classes": 3})
    x = jnp.ones((2, 32, 48, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    outputs, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert outputs["logits"].shape == (2, 32, 48, 3)
    assert "batch_stats" in updates and updates["batch_stats"]


def test_same_rank_code_builds_a_3d_unet():
    model = build({"name": "unet", "padding": "same", "norm": "batch", "width": 2, "depth": 2})
    outputs, variables = model.init_with_output(jax.random.PRNGKey(0), jnp.ones((1, 8, 16, 16, 1)))
    assert outputs["logits"].shape == (1, 8, 16, 16, 2)
    kernel = variables["params"]["down0"]["conv1"]["conv"]["kernel"]
    assert kernel.shape == (3, 3, 3, 1, 2)


def test_valid_unet_logits_are_the_centre_of_a_same_unet_on_the_cropped_input():
    # Valid convolutions: each output pixel sees only real input, so the logits of a
    # shifted window equal the logits of the full input at the shifted place.
    model = build({"name": "unet", "width": 2, "depth": 2})
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 108, 108, 1))
    variables = model.init(jax.random.PRNGKey(1), x[:, :92, :92])
    full = model.apply(variables, x)["logits"]              # 108 -> 68
    window = model.apply(variables, x[:, 16:, 16:])["logits"]  # 92 -> 52
    assert full.shape[1] == 68 and window.shape[1] == 52
    assert jnp.allclose(full[:, 16:, 16:], window, atol=1e-5)
