"""DeepLab v1/v2/v3/v3+: parity with segmentation_models_pytorch's DeepLabV3Plus, exact
parameter counts (layer-by-layer arithmetic or the reference model's count), decoder details."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from segjax import convert
from segjax.models import registry
from segjax.models.decoders import deeplab
from segjax.models.segmenter import count_params
from tests import torch_refs

# torchvision resnet50 / resnet101 without the ImageNet fc (2048 x 1000 + 1000 = 2,049,000):
# 25,557,032 - 2,049,000 and 44,549,160 - 2,049,000.
RESNET50, RESNET101 = 23_508_032, 42_500_160
# DeepLabv3 ASPP (2048 in, 256 out; convs without bias + BN (2 x 256)): 1x1 524,800, three 3x3
# 3 x 4,719,104, image pooling 524,800, projection 1280 x 256 + 512 = 328,192; 1x1 classifier
# 256 x 21 + 21 = 5,397.
ASPP_V3 = 524_800 + 3 * 4_719_104 + 524_800 + 328_192
# DeepLab v2 ASPP-L: four 3x3 convs 2048 -> 21 with bias: 4 x (3 x 3 x 2048 x 21 + 21).
ASPP_L = 4 * (3 * 3 * 2048 * 21 + 21)
# DeepLab v1 LargeFOV: VGG-16 convs 14,714,688 + fc6 3x3x512x1024 + 1024 + fc7 1024x1024 + 1024
# + fc8 1024x21 + 21; the paper (arXiv:1412.7062, Table 2) reports 20.5M.
LARGEFOV = 14_714_688 + 4_719_616 + 1_049_600 + 21_525
EXPECTED_COUNTS = {
    "deeplabv1_largefov": LARGEFOV,
    "deeplabv2_resnet101": RESNET101 + ASPP_L,
    "deeplabv3_resnet50": RESNET50 + ASPP_V3 + 5_397,
    "deeplabv3_resnet101": RESNET101 + ASPP_V3 + 5_397,
}


def abstract_variables(model, shape=(1, 64, 64, 3)):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_exact_parameter_counts(name):
    assert count_params(abstract_variables(registry.build({"name": name}))) == \
        EXPECTED_COUNTS[name]


def paper_decoder_params(deep: int, low: int, classes: int = 21) -> int:
    """DeepLabv3+ (paper / DeepLab TF) decoder + head with separable convs, BN everywhere:
    a separable conv c -> o is 3x3 depthwise (9c) + BN (2c) + 1x1 (c o) + BN (2o)."""
    separable = lambda c, o: 9 * c + 2 * c + c * o + 2 * o
    conv1x1 = lambda c, o: c * o + 2 * o
    aspp = 2 * conv1x1(deep, 256) + 3 * separable(deep, 256) + conv1x1(5 * 256, 256)
    decoder = conv1x1(low, 48) + separable(256 + 48, 256) + separable(256, 256)
    return aspp + decoder + 256 * classes + classes


@pytest.mark.parametrize("name, encoder", [("deeplabv3plus_xception65", {"name": "xception65"}),
                                           ("deeplabv3plus_mobilenetv2",
                                            {"name": "mobilenetv2", "include_last_conv": False})])
def test_paper_style_deeplabv3plus_counts(name, encoder):
    encoder = registry.build_part("encoder", {**encoder, "output_stride": 16})
    encoder_variables = abstract_variables(encoder)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    features = jax.eval_shape(lambda v, x: encoder.apply(v, x), encoder_variables, x)
    deep, low = features[max(features)].shape[-1], features[4].shape[-1]
    model_count = count_params(abstract_variables(registry.build({"name": name})))
    assert model_count == count_params(encoder_variables) + paper_decoder_params(deep, low)


def test_largefov_count_is_the_papers_20_5m():
    assert round(LARGEFOV / 1e6, 1) == 20.5


def smp_reference(encoder: str = "resnet50", seed: int = 0):
    torch = torch_refs.import_torch()
    smp = torch_refs.import_smp()
    torch.manual_seed(seed)
    net = smp.DeepLabV3Plus(encoder, encoder_weights=None, classes=21)
    return torch_refs.randomize_bn(net, seed).eval()


def test_deeplabv3plus_resnet50_matches_smp():
    # smp: output stride 16 with every conv of layer4 dilated by 2 (multi-grid (1, 1, 1)),
    # separable ASPP (12, 24, 36) + a separable 3x3 conv, x4 align-corners upsampling, 48-channel
    # stride-4 features, one separable 3x3 conv, 1x1 classifier, x4 align-corners upsampling.
    net = smp_reference()
    shape = (1, 64, 64, 3)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = torch_refs.to_nhwc(torch_refs.run_nhwc(net, x))
    model = registry.build({"name": "deeplabv3plus_resnet50"})
    (entry,) = convert.mappings_for(model="deeplabv3plus_resnet50")
    variables, report = convert.convert(torch_refs.state_dict_numpy(net),
                                        abstract_variables(model, shape), entry.factory())
    assert report.complete
    logits = jax.jit(lambda v, x: model.apply(v, x))(variables, x)["logits"]
    assert logits.shape == expected.shape
    assert torch_refs.max_rel_diff(logits, expected) < 1e-4
    assert count_params(variables) == sum(p.numel() for p in net.parameters())


def test_aspp_rates_follow_the_output_stride():
    assert deeplab.rates_for(16) == (6, 12, 18)
    assert deeplab.rates_for(8) == (12, 24, 36)
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got 4"):
        deeplab.rates_for(4)


def conv_dilations(fn, *args):
    """(dilation, groups) of every convolution in the traced function, in order."""
    jaxpr = jax.make_jaxpr(fn)(*args)
    found = []

    def walk(eqns):
        for eqn in eqns:
            if eqn.primitive.name == "conv_general_dilated":
                found.append((eqn.params["rhs_dilation"][0], eqn.params["feature_group_count"]))
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    walk(inner.eqns)

    walk(jaxpr.jaxpr.eqns)
    return found


def test_aspp_branches(native_conv):
    # Numerics are covered by the torchvision / smp parity tests; here: one 1x1, three atrous
    # 3x3 at the given rates, the image-pooling 1x1 and the projection, in that order.
    aspp = deeplab.ASPP((6, 12, 18), 8, dropout=0.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 9, 11, 4)), jnp.float32)
    variables = jax.eval_shape(lambda x: aspp.init(jax.random.PRNGKey(0), x), x)
    assert conv_dilations(lambda v, x: aspp.apply(v, x), variables, x) == \
        [(1, 1), (6, 1), (12, 1), (18, 1), (1, 1), (1, 1)]
    assert variables["params"]["project"]["conv"]["kernel"].shape == (1, 1, 40, 8)
    assert jax.eval_shape(aspp.apply, variables, x).shape == (1, 9, 11, 8)


class Conv3x3Probe(nn.Module):
    style: str | None

    @nn.compact
    def __call__(self, x):
        return deeplab.conv3x3(x, 4, 2, self.style, None, "c", False)


@pytest.mark.parametrize("style, expected", [("tf", [(2, 6), (1, 1)]), ("smp", [(2, 6), (1, 1)]),
                                             (None, [(2, 1)])])
def test_separable_styles(style, expected, native_conv):
    x = jnp.ones((1, 8, 8, 6))
    probe = Conv3x3Probe(style)
    variables = jax.eval_shape(lambda x: probe.init(jax.random.PRNGKey(0), x), x)
    # (dilation, groups): a depthwise dilated 3x3 then a pointwise 1x1, or one dense 3x3.
    assert conv_dilations(lambda v, x: probe.apply(v, x), variables, x) == expected
    params = variables["params"]["c"]
    if style == "smp":  # smp: no BN (and no bias) between the depthwise and pointwise convs
        assert set(params["depthwise"]) == {"kernel"}
    if style == "tf":  # DeepLab's TF code: BN after the depthwise conv too
        assert "bn" in params["depthwise"]["norm"]


def test_unknown_separable_style_is_named():
    with pytest.raises(ValueError, match="separable must be one of"):
        Conv3x3Probe("xception").init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 6)))


def test_deeplabv3plus_decoder_fuses_stride4_features():
    features = {4: jnp.ones((1, 16, 16, 24)), 8: jnp.ones((1, 8, 8, 32)),
                16: jnp.ones((1, 4, 4, 64)), 32: jnp.ones((1, 4, 4, 96))}
    decoder = deeplab.DeepLabV3PlusDecoder(features=32)
    out, variables = jax.eval_shape(
        lambda f: decoder.init_with_output(jax.random.PRNGKey(0), f), features)
    assert out.shape == (1, 16, 16, 32)
    assert variables["params"]["low_level"]["conv"]["kernel"].shape == (1, 1, 24, 48)
    # The paper's decoder: two 3x3 convs over the 32 + 48 concatenation.
    assert variables["params"]["fuse0"]["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 80)
    assert "fuse1" in variables["params"] and "fuse2" not in variables["params"]
    with pytest.raises(KeyError, match="low_level_stride 2 is not an encoder stride"):
        deeplab.DeepLabV3PlusDecoder(low_level_stride=2).init(jax.random.PRNGKey(0), features)


def test_aspp_l_sums_four_atrous_branches_to_classes(native_conv):
    features = {32: jnp.asarray(np.random.default_rng(0).normal(size=(1, 30, 30, 4)),
                                jnp.float32)}
    decoder = deeplab.ASPPLDecoder(3)
    variables = decoder.init(jax.random.PRNGKey(0), features)
    assert [d for d, _ in conv_dilations(lambda v, f: decoder.apply(v, f), variables,
                                         features)] == [6, 12, 18, 24]
    total = decoder.apply(variables, features)
    single = sum(deeplab.layers.Conv(3, 3, padding=r, dilation=r).apply(
        {"params": variables["params"][f"branch{i}"]}, features[32])
        for i, r in enumerate((6, 12, 18, 24)))
    np.testing.assert_allclose(np.asarray(total), np.asarray(single), rtol=1e-5, atol=1e-5)


def test_generic_segmenter_combines_a_deeplab_decoder_with_any_encoder():
    model = registry.build({"name": "segmenter", "num_classes": 5,
                            "encoder": {"name": "vgg16", "output_stride": 8},
                            "decoder": {"name": "deeplabv3", "rates": (12, 24, 36)}})
    x = jax.ShapeDtypeStruct((1, 33, 33, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)["logits"].shape == \
        (1, 33, 33, 5)
    model = registry.build({"name": "segmenter", "num_classes": 5,
                            "encoder": {"name": "resnet18", "output_stride": 8},
                            "decoder": {"name": "aspp_l", "num_classes": 5},
                            "head": {"name": "identity"}})
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)["logits"].shape == \
        (1, 64, 64, 5)


def test_unknown_style_is_named():
    with pytest.raises(ValueError, match="style must be one of"):
        registry.build({"name": "deeplabv3plus_resnet50", "style": "tf"})


def test_identity_head_refuses_features_that_are_not_class_scores():
    model = registry.build({"name": "segmenter", "num_classes": 7,
                            "encoder": {"name": "vgg16"},
                            "decoder": {"name": "aspp_l", "num_classes": 5},
                            "head": {"name": "identity"}})
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    with pytest.raises(ValueError, match="decoder gives 5 channels, expected num_classes=7"):
        jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
