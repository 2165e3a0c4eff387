"""The conversion mechanism: layouts (hand-checked entries), a numerical round trip
through every layer kind, and the errors that name what is wrong."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.convert import (IGNORE, ConversionError, Target, chain, convert, get_mapping,
                            mappings_for, prefixed, rules)
from segjax.convert.core import convert_tensor
from segjax.models import layers
from segjax.models.encoders.resnet import ResNet
from tests import torch_refs


def arange(*shape) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_conv_kernel_oihw_to_hwio():
    torch_weight = arange(2, 3, 1, 2)                 # (O, I, kh, kw)
    kernel = convert_tensor(torch_weight, (1, 2, 3, 2), "kernel")
    assert kernel.shape == (1, 2, 3, 2)
    assert kernel[0, 1, 2, 0] == torch_weight[0, 2, 0, 1] == 5.0
    assert kernel[0, 0, 1, 1] == torch_weight[1, 1, 0, 0] == 8.0


def test_depthwise_kernel_o1hw_to_hw1o():
    torch_weight = arange(4, 1, 3, 3)
    kernel = convert_tensor(torch_weight, (3, 3, 1, 4), "kernel")
    assert kernel.shape == (3, 3, 1, 4)
    assert kernel[2, 1, 0, 3] == torch_weight[3, 0, 2, 1] == 34.0


def test_transposed_conv_kernel_iohw_to_hwio():
    torch_weight = arange(2, 3, 2, 2)                 # (I, O, kh, kw)
    kernel = convert_tensor(torch_weight, (2, 2, 2, 3), "kernel", transposed=True)
    assert kernel[1, 0, 1, 2] == torch_weight[1, 2, 1, 0] == 22.0


def test_linear_weight_is_transposed_and_reshaped_into_a_conv_kernel():
    assert convert_tensor(arange(3, 2), (2, 3), "kernel")[1, 2] == 5.0   # (O, I) -> (I, O)
    # A Linear over a flattened (C=2, H=2, W=2) map (VGG's fc6) as a 2x2 conv kernel:
    # input index c * 4 + h * 2 + w.
    kernel = convert_tensor(arange(4, 8), (2, 2, 2, 4), "kernel")
    assert kernel[1, 0, 1, 3] == arange(4, 8)[3, 1 * 4 + 1 * 2 + 0] == 30.0


def test_norm_and_bias_leaves_are_copied_unchanged():
    assert np.array_equal(convert_tensor(arange(5), (5,), "scale"), arange(5))
    assert np.array_equal(convert_tensor(arange(5), (5,), "mean"), arange(5))


class TinyFlax(nn.Module):
    """Every layer kind the converter handles, in segjax layers."""

    @nn.compact
    def __call__(self, x):
        x = layers.Conv(4, 3, padding=1, use_bias=False, name="conv")(x)
        x = layers.Norm("batch", name="norm")(x, train=False)
        x = layers.PReLU(name="act")(x)
        x = layers.Conv(4, 3, padding=1, groups=4, name="depthwise")(x)
        x = layers.ConvTranspose(4, 2, 2, name="up")(x)
        return nn.Dense(5, name="fc")(x)


TINY_RULES = (
    (r"features\.0", "conv"),
    (r"features\.1", "norm/bn"),
    (r"features\.2", "act"),
    (r"features\.3", "depthwise"),
    (r"up", Target("up", transposed=True)),
    (r"fc", "fc"),
    (r"aux(\..*)?", IGNORE),
)


def tiny_torch():
    torch = torch_refs.import_torch()
    nn_ = torch.nn

    class Tiny(nn_.Module):
        def __init__(self):
            super().__init__()
            self.features = nn_.Sequential(nn_.Conv2d(3, 4, 3, padding=1, bias=False),
                                           nn_.BatchNorm2d(4), nn_.PReLU(4),
                                           nn_.Conv2d(4, 4, 3, padding=1, groups=4))
            self.up = nn_.ConvTranspose2d(4, 4, 2, stride=2)
            self.fc = nn_.Linear(4, 5)
            self.aux = nn_.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.up(self.features(x)).permute(0, 2, 3, 1))

    torch.manual_seed(0)
    model = torch_refs.randomize_bn(Tiny()).eval()
    with torch.no_grad():
        model.features[2].weight.copy_(torch.tensor([0.1, -0.2, 0.3, 0.5]))
    return model


def tiny_variables(x):
    return jax.eval_shape(TinyFlax().init, jax.random.PRNGKey(0), jnp.asarray(x))


def test_every_layer_kind_round_trips_numerically():
    torch = torch_refs.import_torch()
    model = tiny_torch()
    x = np.random.RandomState(0).randn(1, 6, 6, 3).astype(np.float32)
    state = {f"model.{k}": v for k, v in torch_refs.state_dict_numpy(model).items()}
    variables, report = convert(state, tiny_variables(x), prefixed("model.", "", rules(*TINY_RULES)))
    assert report.complete and report.ignored == [
        "model.features.1.num_batches_tracked", "model.aux.weight", "model.aux.bias"]
    assert report.converted["model.features.1.running_var"] == "batch_stats/norm/bn/var"
    with torch.no_grad():
        expected = model(torch_refs.to_nchw(x)).numpy()
    actual = TinyFlax().apply(variables, x)
    assert actual.shape == (1, 12, 12, 5)
    assert torch_refs.max_rel_diff(actual, expected) < 1e-5
    # The transposed-conv layout cannot be inferred when C_in == C_out: without the
    # Target flag the shapes agree and the numbers are wrong.
    plain = rules(*[(p, "up" if isinstance(t, Target) else t) for p, t in TINY_RULES])
    wrong, _ = convert(state, tiny_variables(x), prefixed("model.", "", plain))
    assert torch_refs.max_rel_diff(TinyFlax().apply(wrong, x), expected) > 1e-2


def test_shape_mismatch_names_both_sides():
    model = tiny_torch()
    x = np.zeros((1, 6, 6, 3), np.float32)
    state = torch_refs.state_dict_numpy(model)
    state["fc.weight"] = np.zeros((7, 4), np.float32)
    with pytest.raises(ConversionError) as error:
        convert(state, tiny_variables(x), rules(*TINY_RULES))
    message = str(error.value)
    assert "'fc.weight' (7, 4)" in message and "params/fc/kernel (4, 5)" in message


def test_unused_tensors_and_unfilled_variables_are_listed_by_name():
    model = tiny_torch()
    x = np.zeros((1, 6, 6, 3), np.float32)
    state = torch_refs.state_dict_numpy(model)
    del state["features.1.running_var"]
    state["extra.weight"] = np.zeros((3,), np.float32)       # no rule
    state["features.9.weight"] = np.zeros((3,), np.float32)  # a rule, but no such variable
    mapping = rules((r"features\.9", "missing"), *TINY_RULES)
    with pytest.raises(ConversionError) as error:
        convert(state, tiny_variables(x), mapping)
    message = str(error.value)
    for expected in ("extra.weight: no rule for torch module 'extra'",
                     "features.9.weight: no flax variable at params/missing/kernel",
                     "batch_stats/norm/bn/var"):
        assert expected in message
    variables, report = convert(state, tiny_variables(x), mapping, strict=False)
    assert sorted(report.unused) == ["extra.weight", "features.9.weight"]
    assert report.unmapped == ["batch_stats/norm/bn/var"]
    assert isinstance(variables["batch_stats"]["norm"]["bn"]["var"], jax.ShapeDtypeStruct)


def test_two_tensors_for_one_variable_is_an_error():
    model = tiny_torch()
    state = torch_refs.state_dict_numpy(model)
    state["fc2.weight"] = state["fc.weight"]
    with pytest.raises(ConversionError, match="'fc.weight' and 'fc2.weight' both map"):
        convert(state, tiny_variables(np.zeros((1, 6, 6, 3), np.float32)),
                chain(rules(*TINY_RULES), rules((r"fc2", "fc"))))


def test_scope_limits_what_must_be_filled():
    model = tiny_torch()
    x = np.zeros((1, 6, 6, 3), np.float32)
    inner = tiny_variables(x)
    variables = {collection: {"encoder": tree, "decoder": {"w": jnp.zeros(3)}}
                 for collection, tree in inner.items()}
    state = torch_refs.state_dict_numpy(model)
    mapping = prefixed("", "encoder", rules(*TINY_RULES))
    converted, report = convert(state, variables, mapping, scope="encoder")
    assert report.complete and converted["params"]["decoder"]["w"].shape == (3,)
    with pytest.raises(ConversionError, match="params/decoder/w"):
        convert(state, variables, mapping)


def test_raw_parameters_keep_or_rename_their_leaf():
    class Raw(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + self.param("cls", nn.initializers.zeros, (1, 1, 4)) \
                + self.param("pos_embed", nn.initializers.zeros, (1, 3, 4))

    shapes = jax.eval_shape(Raw().init, jax.random.PRNGKey(0), jnp.zeros((1, 3, 4)))
    state = {"cls_token": arange(1, 1, 4), "pos_embed": arange(1, 3, 4)}
    with pytest.raises(ConversionError, match="cls_token: no flax variable at params/cls_token"):
        convert(state, shapes, rules(("", "")))
    variables, _ = convert(state, shapes, rules(("", Target("", leaves={"cls_token": "cls"}))))
    assert variables["params"]["cls"][0, 0, 3] == 3.0
    assert variables["params"]["pos_embed"][0, 2, 1] == 9.0


def test_registered_mappings_are_found_by_encoder_and_unknown_names_are_listed():
    names = {m.name for m in mappings_for(encoder="resnet50")}
    assert {"torchvision_resnet", "hf_resnet"} <= names
    assert {m.name for m in mappings_for(encoder="resnet50_v1c")} == {"resnet_deep_stem"}
    with pytest.raises(KeyError, match="registered mappings: .*torchvision_resnet"):
        get_mapping("no_such_mapping")


def test_resnet_mapping_covers_every_torchvision_tensor():
    torchvision = torch_refs.import_torchvision()
    state = torch_refs.state_dict_numpy(torchvision.models.resnet18())
    shapes = jax.eval_shape(lambda x: ResNet(depth=18).init(jax.random.PRNGKey(0), x),
                            jnp.zeros((1, 32, 32, 3)))
    _, report = convert(state, shapes, get_mapping("torchvision_resnet").factory())
    # 20 conv kernels (stem, 16 in blocks, 3 projections) + 20 BNs x 4 tensors.
    assert len(report.converted) == 20 + 20 * 4
    assert sorted(set(report.ignored) - {n for n in report.ignored
                                         if n.endswith("num_batches_tracked")}) == \
        ["fc.bias", "fc.weight"]
