"""ResNet encoders: exact parameter counts, and feature parity with torchvision,
Hugging Face transformers and timm references (random weights, random BN stats)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.encoders.resnet import BasicBlock, Bottleneck, ResNet, block_dilations
from segjax.models.segmenter import count_params
from tests import torch_refs
from tests.models.encoders.encoder_parity import (assert_parity, conv_dilations,
                                                  converted_variables, features, random_input,
                                                  torchvision_resnet_features, variable_shapes)

X = random_input((1, 64, 64, 3))

# torchvision's documented `num_params` (torchvision.models.ResNet*_Weights.IMAGENET1K_V1.meta)
# minus its classifier fc (512 * 1000 + 1000 for 18/34, 2048 * 1000 + 1000 otherwise).
TORCHVISION_COUNTS = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet101": 44_549_160 - 2_049_000,
    "resnet152": 60_192_808 - 2_049_000,
}
# v1c stem: 3x3 convs 3->32, 32->32, 32->64 (864 + 9,216 + 18,432 weights) and two extra
# 32-channel BNs (128) replace the 7x7 conv (9,408 weights).
DEEP_STEM_DELTA = 864 + 9_216 + 18_432 + 128 - 9_408


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_counts(name):
    for variant, expected in ((name, TORCHVISION_COUNTS[name]),
                              (f"{name}_v1c", TORCHVISION_COUNTS[name] + DEEP_STEM_DELTA)):
        encoder = registry.build_part("encoder", {"name": variant})
        assert count_params(variable_shapes(encoder, X)) == expected, variant


def test_resnet50_matches_torchvision_at_output_strides_32_16_8():
    torchvision = torch_refs.import_torchvision()
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = torch_refs.randomize_bn(torchvision.models.resnet50()).eval()
    variables = converted_variables(ResNet(depth=50), reference, "torchvision_resnet", X)
    for output_stride, dilate in ((32, None), (16, [False, False, True]),
                                  (8, [False, True, True])):
        dilated = torchvision.models.resnet50(replace_stride_with_dilation=dilate)
        dilated.load_state_dict(reference.state_dict())
        expected = torchvision_resnet_features(dilated.eval(), X)
        actual = features(ResNet(depth=50, output_stride=output_stride), variables, X)
        assert actual[32].shape[1] == 64 // output_stride
        assert_parity(actual, expected, f"resnet50 output_stride={output_stride}")


def test_resnet50_matches_transformers_resnet_model():
    transformers = torch_refs.import_transformers()
    torch = torch_refs.import_torch()
    torch.manual_seed(1)
    config = transformers.ResNetConfig(depths=[3, 4, 6, 3], layer_type="bottleneck",
                                       hidden_sizes=[256, 512, 1024, 2048])
    reference = torch_refs.randomize_bn(transformers.ResNetModel(config)).eval()
    variables = converted_variables(ResNet(depth=50), reference, "hf_resnet", X)
    with torch.no_grad():
        hidden = reference(torch_refs.to_nchw(X), output_hidden_states=True).hidden_states
    # hidden_states: the stem output after max pooling, then each stage.
    expected = {4 * 2 ** i: torch_refs.to_nhwc(h) for i, h in enumerate(hidden[1:])}
    actual = features(ResNet(depth=50), variables, X)
    assert_parity({k: actual[k] for k in expected}, expected, "resnet50 vs transformers")


@pytest.mark.slow
def test_deep_stem_resnet50_matches_timm_resnet50c():
    timm = torch_refs.import_timm()
    torch = torch_refs.import_torch()
    torch.manual_seed(2)
    reference = torch_refs.randomize_bn(timm.create_model("resnet50c", pretrained=False,
                                                          features_only=True)).eval()
    variables = converted_variables(ResNet(depth=50, deep_stem=True), reference,
                                    "resnet_deep_stem", X)
    with torch.no_grad():
        outputs = reference(torch_refs.to_nchw(X))
    expected = {2 ** (i + 1): torch_refs.to_nhwc(y) for i, y in enumerate(outputs)}
    assert_parity(features(ResNet(depth=50, deep_stem=True), variables, X), expected,
                  "resnet50_v1c vs timm resnet50c")


def test_dilated_basic_blocks_match_timm_resnet18_at_output_stride_8():
    # torchvision refuses dilation in BasicBlock; timm dilates it the same way (first conv of
    # a stage's first block at the previous rate, everything after at the new rate).
    timm = torch_refs.import_timm()
    torch = torch_refs.import_torch()
    torch.manual_seed(3)
    reference = torch_refs.randomize_bn(timm.create_model(
        "resnet18", pretrained=False, features_only=True, output_stride=8)).eval()
    model = ResNet(depth=18, output_stride=8)
    variables = converted_variables(model, reference, "torchvision_resnet", X)
    with torch.no_grad():
        outputs = reference(torch_refs.to_nchw(X))
    expected = {2 ** (i + 1): torch_refs.to_nhwc(y) for i, y in enumerate(outputs)}
    assert expected[32].shape == (1, 8, 8, 512)
    assert_parity(features(model, variables, X), expected, "resnet18 output_stride=8 vs timm")


def test_multi_grid_rates_multiply_the_last_stage_dilation():
    # DeepLabv3 (arXiv:1706.05587, sec. 3.2): output stride 16, multi-grid (1, 2, 4)
    # gives block 4 the rates 2 * (1, 2, 4) = (2, 4, 8).
    model = ResNet(depth=50, output_stride=16, multi_grid=(1, 2, 4))
    dilations = conv_dilations(model, X, "layer4_")
    assert {k: v for k, v in dilations.items() if k.endswith("conv2")} == {
        "layer4_0/conv2": 2, "layer4_1/conv2": 4, "layer4_2/conv2": 8}
    # Without multi-grid, torchvision's rule: the first block keeps the previous dilation.
    plain = conv_dilations(ResNet(depth=50, output_stride=8), X, "layer")
    assert [plain[f"layer{s}_{b}/conv2"] for s, b in ((3, 0), (3, 1), (4, 0), (4, 1))] == \
        [1, 2, 2, 4]
    assert block_dilations(3, 1, 2, (1, 2, 4)) == [(2, 2), (4, 4), (8, 8)]


def test_output_shapes_and_nominal_stride_keys():
    for output_stride in (32, 16, 8):
        model = ResNet(depth=18, output_stride=output_stride)
        shapes = variable_shapes(model, X)
        out = jax.eval_shape(lambda v: model.apply(v, X), shapes)
        assert sorted(out) == [2, 4, 8, 16, 32]
        assert [out[s].shape[1] for s in (2, 4, 8, 16, 32)] == \
            [64 // min(s, output_stride) for s in (2, 4, 8, 16, 32)]
        assert out[32].shape[-1] == 512


def test_zero_init_last_bn_makes_blocks_start_as_the_identity():
    x = np.abs(random_input((1, 4, 4, 32), seed=3))
    for block in (BasicBlock(32, zero_init_last_bn=True),
                  Bottleneck(8, zero_init_last_bn=True)):
        variables = block.init(jax.random.PRNGKey(0), x, train=False)
        last = "bn2" if isinstance(block, BasicBlock) else "bn3"
        assert np.all(np.asarray(variables["params"][last]["bn"]["scale"]) == 0)
        np.testing.assert_allclose(block.apply(variables, x, train=False), x, atol=1e-6)


def test_max_stride_stops_the_encoder_and_build_unused_keeps_the_weights():
    """smp's truncated encoders (PSPNet's encoder_depth=3) and pruned UNet++: stages past
    max_stride are not run; with build_unused their weights exist (smp's count), without not."""
    full = count_params(variable_shapes(ResNet(depth=18), X))
    kept = ResNet(depth=18, max_stride=8, build_unused=True)
    shapes = variable_shapes(kept, X)
    assert count_params(shapes) == full
    assert sorted(jax.eval_shape(lambda v: kept.apply(v, X), shapes)) == [2, 4, 8]
    truncated = ResNet(depth=18, max_stride=8)
    truncated_shapes = variable_shapes(truncated, X)
    # Applied, the kept model runs exactly the truncated model's operations.
    operations = lambda model, v: len(jax.make_jaxpr(lambda v: model.apply(v, X))(v).eqns)
    assert operations(kept, shapes) == operations(truncated, truncated_shapes)
    dropped = count_params(truncated_shapes)
    assert dropped == full - sum(count_params(shapes["params"][f"layer{s}_{b}"])
                                 for s in (3, 4) for b in (0, 1))


@pytest.mark.parametrize("options, message", [
    ({"max_stride": 64}, "max_stride must be one of"),
    ({"output_stride": 4}, "output_stride must be one of"),
    ({"depth": 42}, "depth must be one of"),
    ({"multi_grid": (1, 2)}, "needs one rate per block"),
])
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        variable_shapes(ResNet(**options), X)
