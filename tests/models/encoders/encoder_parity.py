"""Helpers shared by the encoder parity tests: convert a torch reference's
weights into a segjax encoder and compare features."""

from __future__ import annotations

import functools

import flax.linen as nn

import jax
import jax.numpy as jnp
import numpy as np

from segjax.convert import convert, get_mapping
from tests import torch_refs

TOLERANCE = 1e-4  # max |diff| relative to the reference output's max |value|


def variable_shapes(module, x):
    """The variables' shapes and dtypes, without computing an initialisation."""
    return jax.eval_shape(functools.partial(module.init, train=False),
                          jax.random.PRNGKey(0), jnp.asarray(x))


def converted_variables(module, torch_model, mapping: str, x):
    """`module`'s variables from `torch_model`'s state dict (strict conversion)."""
    variables, _ = convert(torch_refs.state_dict_numpy(torch_model),
                           variable_shapes(module, x), get_mapping(mapping).factory())
    return variables


def features(module, variables, x) -> dict:
    return jax.jit(functools.partial(module.apply, train=False))(variables, jnp.asarray(x))


def random_input(shape, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def assert_parity(actual: dict, expected: dict, label: str) -> dict:
    """Asserts every stride's features match; returns {stride: relative max diff}."""
    assert sorted(actual) == sorted(expected), (label, sorted(actual), sorted(expected))
    diffs = {stride: torch_refs.max_rel_diff(actual[stride], expected[stride])
             for stride in expected}
    worst = max(diffs.values())
    print(f"{label}: max relative |diff| {worst:.2e}")  # shown with pytest -s
    assert worst < TOLERANCE, f"{label}: relative max abs differences by stride {diffs}"
    return diffs


def conv_dilations(module, x, prefix: str) -> dict[str, int]:
    """The dilation of every Conv whose path starts with `prefix`."""
    seen = {}

    def record(next_fun, args, kwargs, context):
        if type(context.module).__name__ == "Conv" and context.method_name == "__call__":
            path = "/".join(context.module.path)
            if path.startswith(prefix):
                seen[path] = context.module.dilation
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        variable_shapes(module, x)
    return seen


def torchvision_resnet_features(model, x) -> dict:
    """A torchvision ResNet's stem (after ReLU) and layer1..4 outputs, keyed by stride."""
    torch = torch_refs.import_torch()
    with torch.no_grad():
        y = model.relu(model.bn1(model.conv1(torch_refs.to_nchw(x))))
        out = {2: y}
        y = model.maxpool(y)
        for index, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
            y = layer(y)
            out[4 * 2 ** index] = y
    return {stride: torch_refs.to_nhwc(value) for stride, value in out.items()}
