"""torchvision's FCN / DeepLabv3 models: weights import one to one and give torchvision's
outputs (main and auxiliary), and every model has torchvision's exact parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import convert
from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs

# num_params of torchvision's VOC weights (21 classes, aux classifier included), as listed in
# torchvision's weight tables (FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.meta etc.).
TORCHVISION_COUNTS = {
    "tv_fcn_resnet50": 35_322_218,
    "tv_fcn_resnet101": 54_314_346,
    "tv_deeplabv3_resnet50": 42_004_074,
    "tv_deeplabv3_resnet101": 60_996_202,
    "tv_deeplabv3_mobilenet_v3_large": 11_029_328,
}


def abstract_variables(model, shape=(1, 64, 64, 3)):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)


def reference(name: str, seed: int = 0):
    torch = torch_refs.import_torch()
    torchvision = torch_refs.import_torchvision()
    torch.manual_seed(seed)
    builder = getattr(torchvision.models.segmentation, name[len("tv_"):])
    net = builder(weights=None, weights_backbone=None, aux_loss=True)
    return torch_refs.randomize_bn(net, seed).eval()


def mapping_for(name: str):
    (entry,) = convert.mappings_for(model=name)
    return entry.factory()


def check_parity(name: str, shape=(1, 64, 64, 3)):
    net = reference(name)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = torch_refs.run_nhwc(net, x)
    model = registry.build({"name": name})
    variables, report = convert.convert(torch_refs.state_dict_numpy(net),
                                        abstract_variables(model, shape),
                                        mapping_for(name))
    assert report.complete
    outputs = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
    for ours, theirs in (("logits", "out"), ("aux_logits", "aux")):
        reference_output = torch_refs.to_nhwc(expected[theirs])
        assert outputs[ours].shape == reference_output.shape
        assert torch_refs.max_rel_diff(outputs[ours], reference_output) < 1e-4, ours
    assert count_params(variables) == sum(p.numel() for p in net.parameters())


def test_fcn_resnet50_matches_torchvision():
    check_parity("tv_fcn_resnet50")


def test_deeplabv3_resnet50_matches_torchvision():
    check_parity("tv_deeplabv3_resnet50")


def test_deeplabv3_mobilenet_v3_large_matches_torchvision():
    check_parity("tv_deeplabv3_mobilenet_v3_large", (1, 96, 96, 3))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tv_fcn_resnet101", "tv_deeplabv3_resnet101"])
def test_resnet101_models_match_torchvision(name):
    check_parity(name)


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_exact_parameter_counts(name):
    assert count_params(abstract_variables(registry.build({"name": name}))) == \
        TORCHVISION_COUNTS[name]


def test_without_aux_head_there_are_no_aux_logits():
    model = registry.build({"name": "tv_fcn_resnet50", "aux": False})
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    outputs = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert set(outputs) == {"logits"} and "aux_head" not in variables["params"]


def test_a_state_dict_of_another_model_is_refused_by_name():
    net = reference("tv_fcn_resnet50")
    model = registry.build({"name": "tv_deeplabv3_resnet50"})
    with pytest.raises(convert.ConversionError,
                       match=r"shape mismatch: torch 'classifier\.1\.weight'.*head_conv"):
        convert.convert(torch_refs.state_dict_numpy(net), abstract_variables(model),
                        mapping_for("tv_deeplabv3_resnet50"))
