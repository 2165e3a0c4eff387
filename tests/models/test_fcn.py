"""FCN-32s/16s/8s: parity with pytorch-fcn (the Caffe reference nets' port), exact parameter
counts, Caffe alignment (output = input size for any size), skip fusion by hand."""

import importlib.util
import site
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import convert
from segjax.models import layers, registry
from segjax.models.decoders import fcn
from segjax.models.segmenter import count_params
from tests import torch_refs

# Exact counts of the reference nets with 21 classes, layer by layer (pytorch-fcn and the Caffe
# voc-fcn*s nets have the same layers):
#   VGG-16 conv1_1..conv5_3                        14,714,688
#   fc6  7x7x512x4096 + 4096                      102,764,544
#   fc7  4096x4096 + 4096                          16,781,312
#   score_fr 4096x21 + 21                              86,037
#   score_pool4 512x21 + 21 / score_pool3 256x21 + 21  10,773 / 5,397
#   transposed convs (no bias) 21x21xk^2: k=4: 7,056; k=64 (32s): 1,806,336;
#   k=32 (16s): 451,584; k=16 (8s): 112,896
# FCN-32s = 14,714,688 + 102,764,544 + 16,781,312 + 86,037 + 1,806,336           = 136,152,917
# FCN-16s = ... + 86,037 + 10,773 + 7,056 + 451,584                               = 134,815,994
# FCN-8s  = ... + 86,037 + 10,773 + 5,397 + 7,056 + 7,056 + 112,896               = 134,489,759
REFERENCE_COUNTS = {"fcn32s": 136_152_917, "fcn16s": 134_815_994, "fcn8s": 134_489_759}
TORCHFCN_CLASSES = {"fcn32s": "FCN32s", "fcn16s": "FCN16s", "fcn8s": "FCN8s"}


def abstract_variables(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)


def import_torchfcn():
    """pytorch-fcn's model classes without its package __init__ (which imports its trainer and
    the `fcn` download helper); `fcn` is only used to download weights, so a stub stands in."""
    torch_refs.import_torchvision()
    roots = [Path(p) / "torchfcn" / "models" for p in site.getsitepackages()]
    root = next((r for r in roots if (r / "fcn8s.py").is_file()), None)
    if root is None:
        pytest.skip("PyTorch reference torchfcn (pytorch-fcn) is not installed; "
                    "install with `make install-dev`")
    sys.modules.setdefault("fcn", types.ModuleType("fcn"))
    spec = importlib.util.spec_from_file_location("torchfcn_models", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["torchfcn_models"] = module
    spec.loader.exec_module(module)
    return module


def reference_fcn(class_name: str, seed: int = 0):
    torch = torch_refs.import_torch()
    torchfcn = import_torchfcn()
    torch.manual_seed(seed)
    net = getattr(torchfcn, class_name)().eval()
    with torch.no_grad():  # the reference zero-initialises the score layers
        for name, parameter in net.named_parameters():
            if name.startswith("score"):
                parameter.normal_(0.0, 0.01)
    return net


def check_parity(name: str, class_name: str, shape, **options):
    net = reference_fcn(class_name)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = torch_refs.to_nhwc(torch_refs.run_nhwc(net, x))
    model = registry.build({"name": name, **options})
    variables, report = convert.convert(torch_refs.state_dict_numpy(net),
                                        abstract_variables(model, shape),
                                        convert.get_mapping("torchfcn").factory())
    assert report.complete
    logits = jax.jit(lambda v, x: model.apply(v, x))(variables, x)["logits"]
    assert logits.shape == expected.shape == shape[:3] + (21,)
    assert torch_refs.max_rel_diff(logits, expected) < 1e-4


@pytest.mark.slow
def test_fcn8s_matches_pytorch_fcn_at_an_odd_size():
    # 45x53: odd sizes exercise Caffe's ceil-mode pooling and every crop offset.
    check_parity("fcn8s", "FCN8s", (1, 45, 53, 3))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn32s", "fcn16s"])
def test_fcn32s_fcn16s_match_pytorch_fcn(name):
    check_parity(name, TORCHFCN_CLASSES[name], (1, 37, 64, 3))


@pytest.mark.slow
def test_fcn8s_at_once_matches_pytorch_fcn():
    check_parity("fcn8s", "FCN8sAtOnce", (1, 40, 33, 3), at_once=True)


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_exact_parameter_counts(name):
    model = registry.build({"name": name})
    assert count_params(abstract_variables(model, (1, 64, 64, 3))) == REFERENCE_COUNTS[name]


@pytest.mark.slow
def test_parameter_counts_equal_pytorch_fcn():
    torchfcn = import_torchfcn()
    for name, class_name in TORCHFCN_CLASSES.items():
        net = getattr(torchfcn, class_name)()
        assert sum(p.numel() for p in net.parameters()) == REFERENCE_COUNTS[name]


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_output_has_the_input_size_for_any_size(name):
    model = registry.build({"name": name})
    variables = abstract_variables(model, (1, 64, 64, 3))
    for size in [(1, 1), (31, 33), (64, 97), (500, 353)]:
        x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
        logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)["logits"]
        assert logits.shape == (1, *size, 21)


def test_caffe_offsets_follow_from_the_layer_geometry():
    # Map a position back to input pixels: a conv/pool (k, s, p) sends u to s*u + (k-1)/2 - p;
    # a transposed conv (k, s) sends u to s*u + (k-1)/2.
    def through(layers_, a=1.0, b=0.0):
        for kind, k, s, p in layers_:  # x = a*u + b in input pixels
            if kind == "conv":
                a, b = a * s, b + a * ((k - 1) / 2 - p)
            else:
                a, b = a / s, b - a / s * (k - 1) / 2
        return a, b

    vgg = [("conv", 3, 1, 100), ("conv", 3, 1, 1)] + [("conv", 2, 2, 0)]
    pool3 = through(vgg + [("conv", 2, 2, 0)] * 2)
    pool4 = through(vgg + [("conv", 2, 2, 0)] * 3)
    fc7 = through(vgg + [("conv", 2, 2, 0)] * 4 + [("conv", 7, 1, 0)])
    assert (pool3, pool4, fc7) == ((8, -95.5), (16, -91.5), (32, 12.5))
    up16 = through([("deconv", 4, 2, 0)], *fc7)
    up8 = through([("deconv", 4, 2, 0)], *up16)
    # skip offset = (b_up - b_skip) / a: where the upsampled map's pixel 0 sits in the skip.
    assert ((up16[1] - pool4[1]) / 16, (up8[1] - pool3[1]) / 8) == fcn.CAFFE_SKIP_OFFSETS
    final = {32: through([("deconv", 64, 32, 0)], *fc7),
             16: through([("deconv", 32, 16, 0)], *up16),
             8: through([("deconv", 16, 8, 0)], *up8)}
    assert {k: -b for k, (a, b) in final.items()} == fcn.CAFFE_FINAL_OFFSETS


def decoder_apply(decoder, features, params):
    variables = decoder.init(jax.random.PRNGKey(0), features)
    return decoder.apply({"params": {**variables["params"], **params}}, features)


def test_same_alignment_fusion_by_hand():
    # One class; score layers are identities (kernel 1), so scores = features. "same"
    # transposed convs upsample a constant to the constant; the stride-8 result is
    # 1 (fc7) + 2 (pool4) + 3 (pool3) everywhere in the interior.
    features = {8: jnp.full((1, 24, 24, 1), 3.0), 16: jnp.full((1, 12, 12, 1), 2.0),
                32: jnp.ones((1, 6, 6, 1))}
    decoder = fcn.FCNDecoder(1, (16, 8))
    identity = {"kernel": jnp.ones((1, 1, 1, 1)), "bias": jnp.zeros((1,))}
    out = decoder_apply(decoder, features,
                        {"score_fr": identity, "score16": identity, "score8": identity})
    assert out.shape == (1, 192, 192, 1)
    # Zero padding reaches 16 + 2 x 8 + 8 pixels in from the border.
    np.testing.assert_allclose(np.asarray(out)[0, 48:-48, 48:-48, 0], 6.0, rtol=1e-6)
    assert float(out[0, 0, 0, 0]) < 5.0


def test_at_once_scales_the_skips():
    rng = np.random.default_rng(0)
    features = {s: jnp.asarray(rng.normal(size=(1, 64 // s, 64 // s, 4)), jnp.float32)
                for s in (8, 16, 32)}
    plain = fcn.FCNDecoder(3, (16, 8))
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype),
                                    plain.init(jax.random.PRNGKey(0), features)["params"])
    at_once = fcn.FCNDecoder(3, (16, 8), skip_scales=fcn.AT_ONCE_SKIP_SCALES)
    scaled = jax.tree_util.tree_map(lambda p: p, params)
    scaled["score16"] = {**params["score16"], "kernel": params["score16"]["kernel"] * 0.01}
    scaled["score8"] = {**params["score8"], "kernel": params["score8"]["kernel"] * 0.0001}
    np.testing.assert_allclose(np.asarray(at_once.apply({"params": params}, features)),
                               np.asarray(plain.apply({"params": scaled}, features)),
                               rtol=1e-5, atol=1e-6)


def test_transposed_convs_start_bilinear_and_score_layers_at_zero():
    features = {8: jnp.ones((1, 4, 4, 8)), 16: jnp.ones((1, 2, 2, 8)), 32: jnp.ones((1, 1, 1, 8))}
    params = fcn.FCNDecoder(5, (16, 8)).init(jax.random.PRNGKey(0), features)["params"]
    np.testing.assert_array_equal(
        params["upscore_final"]["kernel"],
        layers.bilinear_upsample_init(None, (16, 16, 5, 5)))
    assert not np.any(params["score_fr"]["kernel"]) and "bias" not in params["upscore16"]


def test_bad_configuration_is_named():
    features = {8: jnp.ones((1, 4, 4, 8)), 32: jnp.ones((1, 1, 1, 8))}
    with pytest.raises(KeyError, match=r"skip strides \[16\] are not encoder strides"):
        fcn.FCNDecoder(2, (16, 8)).init(jax.random.PRNGKey(0), features)
    with pytest.raises(ValueError, match="one scale per skip"):
        fcn.FCNDecoder(2, (16, 8), skip_scales=(0.01,)).init(
            jax.random.PRNGKey(0), {**features, 16: jnp.ones((1, 2, 2, 8))})
    dilated = {8: jnp.ones((1, 4, 4, 8)), 16: jnp.ones((1, 4, 4, 8)), 32: jnp.ones((1, 4, 4, 8))}
    with pytest.raises(ValueError, match="use an encoder at output_stride 32"):
        fcn.FCNDecoder(2, (16, 8)).init(jax.random.PRNGKey(0), dilated)
