"""PAN, MAnet and UPerNet on ResNet-34 at smp's defaults: parameter counts and logits equal to
segmentation_models_pytorch 0.6.0's `PAN/MAnet/UPerNet("resnet34", encoder_weights=None,
classes=K)` after `segjax.convert`, at a square and a non-square input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import convert
from segjax.models import registry
from segjax.models.decoders.manet import PositionAttention
from segjax.models.segmenter import count_params
from segjax.ops import pooling
from tests import torch_refs

# (smp class, classes K, parameter count counted with smp 0.6.0 at K, square and non-square
# input (H, W)). PAN runs its encoder at output stride 16 and its FPA pools the 1/16 map three
# times, so it needs inputs of at least 128.
CASES = {
    "pan": ("PAN", 5, 21_476_972, (128, 128), (128, 192)),
    "manet": ("MAnet", 3, 31_783_923, (64, 64), (64, 96)),
    "upernet": ("UPerNet", 7, 29_601_223, (96, 96), (64, 160)),
}


def abstract_variables(name: str, num_classes: int, size):
    model = registry.build({"name": f"{name}_resnet34", "num_classes": num_classes})
    x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
    return model, jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameter_count_equals_smp(name):
    _, classes, expected, size, _ = CASES[name]
    _, variables = abstract_variables(name, classes, size)
    assert count_params(variables) == expected


def test_pan_runs_its_encoder_at_output_stride_16_dilated_as_smp():
    model, variables = abstract_variables("pan", 5, (128, 128))
    x = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
    features = jax.eval_shape(lambda v, x: model.apply(v, x, method=lambda m, x: m.encoder(x)),
                              variables, x)
    assert features[32].shape == (1, 8, 8, 512) and features[16].shape == (1, 8, 8, 256)
    decoder = variables["params"]["decoder"]
    assert sorted(decoder) == ["fpa", "gau1", "gau2", "gau3"]
    assert decoder["fpa"]["down1"]["conv"]["kernel"].shape == (7, 7, 512, 1)
    assert decoder["gau3"]["conv"]["conv"]["kernel"].shape == (3, 3, 256, 32)
    assert "bias" in decoder["gau1"]["pool_conv"]["conv"]  # smp's ConvBnRelu keeps its bias


def test_manet_and_upernet_structure():
    _, variables = abstract_variables("manet", 3, (64, 64))
    decoder = variables["params"]["decoder"]
    assert decoder["pab"]["top"]["kernel"].shape == (1, 1, 512, 64)
    assert decoder["block0"]["se_skip"]["reduce"]["kernel"].shape == (1, 1, 256, 16)
    assert decoder["block3"]["hl_conv1"]["conv"]["kernel"].shape == (1, 1, 64, 64)
    assert "se_high" not in decoder["block4"]  # past the last skip: a plain decoder block
    _, variables = abstract_variables("upernet", 7, (64, 64))
    decoder = variables["params"]["decoder"]
    assert decoder["norm3"]["scale"].shape == (512,)
    assert decoder["ppm"]["bottleneck"]["conv"]["kernel"].shape == (3, 3, 512 + 4 * 256, 256)
    assert decoder["fusion"]["conv"]["kernel"].shape == (3, 3, 4 * 256, 256)
    assert variables["params"]["head"]["classifier"]["kernel"].shape == (1, 1, 256, 7)


def smp_reference(name: str):
    smp = torch_refs.import_smp()
    torch = torch_refs.import_torch()
    arch, classes, *_ = CASES[name]
    torch.manual_seed(0)
    model = getattr(smp, arch)("resnet34", encoder_weights=None, classes=classes)
    return torch_refs.randomize_bn(model).eval()


# ResNet-34's feature widths by stride, and smp's decoders over them (encoder_depth 5).
RESNET34_WIDTHS = {2: 64, 4: 64, 8: 128, 16: 256, 32: 512}


def smp_decoder(name: str):
    smp = torch_refs.import_smp()
    torch = torch_refs.import_torch()
    channels = (3, *RESNET34_WIDTHS.values())
    torch.manual_seed(0)
    decoders = smp.decoders
    decoder = {"pan": lambda: decoders.pan.decoder.PANDecoder(channels, 5, 32),
               "manet": lambda: decoders.manet.decoder.MAnetDecoder(
                   channels, (256, 128, 64, 32, 16), 5),
               "upernet": lambda: decoders.upernet.decoder.UPerNetDecoder(channels, 5, 256)}[
        name]()
    return torch_refs.randomize_bn(decoder).eval()


@pytest.mark.parametrize("name,size,dilated", [("pan", (128, 192), True),
                                               ("manet", (64, 96), False),
                                               ("upernet", (96, 160), False)])
def test_decoder_equals_smps_on_resnet34_features(name, size, dilated):
    """The decoder alone (fast): smp's decoder and segjax's on the same random features of
    ResNet-34's widths (PAN's stride-32 feature at 1/16, as its dilated encoder gives it),
    converted with the model's mapping."""
    reference = smp_decoder(name)
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, *size, 3)).astype(np.float32)
    features = {}
    for stride, width in RESNET34_WIDTHS.items():
        step = 16 if dilated and stride == 32 else stride
        shape = (1, size[0] // step, size[1] // step, width)
        features[stride] = rng.standard_normal(shape).astype(np.float32)
    decoder = registry.build_part("decoder", {"name": name})
    variables = jax.eval_shape(lambda f: decoder.init(jax.random.PRNGKey(0), f), features)
    state = {f"decoder.{k}": v for k, v in torch_refs.state_dict_numpy(reference).items()}
    wrapped, _ = convert.convert(state, {c: {"decoder": t} for c, t in variables.items()},
                                 convert.get_mapping(f"smp_{name}").factory(), strict=True)
    ours = jax.jit(decoder.apply)({c: t["decoder"] for c, t in wrapped.items()}, features)
    with torch_refs.import_torch().no_grad():
        theirs = reference([torch_refs.to_nchw(image)] + [torch_refs.to_nchw(features[s])
                                                          for s in sorted(features)])
    assert torch_refs.max_rel_diff(ours, torch_refs.to_nhwc(theirs)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_equal_smp_after_conversion(name):
    """The whole model: smp's parameter count, and its logits after conversion at a square and
    a non-square input."""
    reference = smp_reference(name)
    _, classes, expected, square, non_square = CASES[name]
    assert sum(p.numel() for p in reference.parameters()) == expected
    state = torch_refs.state_dict_numpy(reference)
    mapping = convert.get_mapping(f"smp_{name}").factory()
    for index, size in enumerate((square, non_square)):
        model, variables = abstract_variables(name, classes, size)
        variables, _ = convert.convert(state, variables, mapping, strict=True)
        x = np.random.default_rng(index).standard_normal((1, *size, 3)).astype(np.float32)
        ours = jax.jit(model.apply)(variables, x)["logits"]
        theirs = torch_refs.to_nhwc(torch_refs.run_nhwc(reference, x))
        assert torch_refs.max_rel_diff(ours, theirs) < 1e-4, size


# The decoders over other encoders as smp builds them (generic "segmenter" models converted with
# the same mappings): (decoder, smp encoder, smp options, segjax encoder, head kernel, input).
# smp's PAN dilates with its own rule (every conv of the dilated stage at the new rate), which
# segjax's ResNet reproduces with multi_grid (1, 1, 1); segjax's MobileNetV2 dilates as DeepLab
# does, so PAN on MobileNetV2 is compared at output stride 32.
OTHER_ENCODERS = [
    ("pan", "resnet50", {}, {"name": "resnet50", "output_stride": 16, "multi_grid": (1, 1, 1)},
     3, (128, 160)),
    ("manet", "resnet50", {}, {"name": "resnet50"}, 3, (64, 96)),
    ("upernet", "resnet50", {}, {"name": "resnet50"}, 1, (96, 64)),
    ("pan", "mobilenet_v2", {"encoder_output_stride": 32}, {"name": "mobilenetv2"}, 3,
     (256, 288)),
    ("manet", "mobilenet_v2", {}, {"name": "mobilenetv2"}, 3, (64, 96)),
    ("upernet", "mobilenet_v2", {}, {"name": "mobilenetv2"}, 1, (64, 96)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,smp_encoder,smp_options,encoder,head_kernel,size", OTHER_ENCODERS)
def test_decoder_equals_smp_over_other_encoders(name, smp_encoder, smp_options, encoder,
                                                head_kernel, size):
    smp = torch_refs.import_smp()
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = torch_refs.randomize_bn(getattr(smp, CASES[name][0])(
        smp_encoder, encoder_weights=None, classes=4, **smp_options)).eval()
    model = registry.build({"name": "segmenter", "encoder": encoder, "decoder": {"name": name},
                            "head": {"name": "conv", "kernel_size": head_kernel},
                            "num_classes": 4, "align_corners": True})
    x = np.random.default_rng(0).standard_normal((1, *size, 3)).astype(np.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    assert count_params(variables) == sum(p.numel() for p in reference.parameters())
    variables, _ = convert.convert(torch_refs.state_dict_numpy(reference), variables,
                                   convert.get_mapping(f"smp_{name}").factory(), strict=True)
    ours = jax.jit(model.apply)(variables, x)["logits"]
    theirs = torch_refs.to_nhwc(torch_refs.run_nhwc(reference, x))
    assert torch_refs.max_rel_diff(ours, theirs) < 1e-4


@pytest.mark.parametrize("attention", ["smp", "per_query"])
def test_manet_attention_weights_normalise_as_the_style_says(attention):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5, 8))
    module = PositionAttention(4, attention=attention)
    variables = module.init(jax.random.PRNGKey(1), x)
    assert jax.tree_util.tree_map(jnp.shape, variables) == jax.tree_util.tree_map(
        jnp.shape, PositionAttention(4).init(jax.random.PRNGKey(1), x))
    _, state = module.apply(variables, x, mutable="intermediates")
    weights = state["intermediates"]["attention"][0]
    assert weights.shape == (2, 15, 15)
    if attention == "smp":  # one softmax over all position pairs of an image
        np.testing.assert_allclose(weights.sum((1, 2)), 1.0, rtol=1e-5)
    else:  # one softmax per query position
        np.testing.assert_allclose(weights.sum(2), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="manet decoder: attention must be one of"):
        PositionAttention(4, attention="global").init(jax.random.PRNGKey(1), x)


def test_pan_rejects_a_deepest_feature_smaller_than_8():
    model = registry.build({"name": "pan_resnet34"})
    with pytest.raises(ValueError, match=r"pan decoder: the deepest feature is \(4, 4\)"):
        jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v),
                       jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))


@pytest.mark.parametrize("size,bins", [((7, 5), 3), ((2, 3), 6), ((6, 6), (1, 4))])
def test_adaptive_avg_pool_matches_pytorch(size, bins):
    torch = torch_refs.import_torch()
    x = np.random.default_rng(0).standard_normal((2, *size, 3)).astype(np.float32)
    ours = pooling.adaptive_avg_pool(jnp.asarray(x), bins)
    theirs = torch_refs.to_nhwc(torch.nn.functional.adaptive_avg_pool2d(torch_refs.to_nchw(x),
                                                                        bins))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
