"""MobileNetV2 / MobileNetV3-Large encoders: exact parameter counts and feature
parity with torchvision (random weights, random BN stats, eval mode)."""

from __future__ import annotations

import jax
import pytest

from segjax.models import registry
from segjax.models.encoders.mobilenet import make_divisible
from segjax.models.segmenter import count_params
from tests import torch_refs
from tests.models.encoders.encoder_parity import (assert_parity, converted_variables, features,
                                                  random_input, variable_shapes)

X = random_input((1, 64, 64, 3))

# torchvision's documented `num_params` (MobileNet_V2_Weights.IMAGENET1K_V1.meta: 3,504,872;
# MobileNet_V3_Large_Weights.IMAGENET1K_V1.meta: 5,483,032) minus the classifier:
# V2 Linear(1280, 1000) = 1,281,000; V3 Linear(960, 1280) + Linear(1280, 1000) = 2,511,080.
COUNTS = {"mobilenetv2": 3_504_872 - 1_281_000, "mobilenetv3_large": 5_483_032 - 2_511_080}
# torchvision `features` index of the last block at each nominal stride.
TAPS = {"mobilenetv2": {2: 1, 4: 3, 8: 6, 16: 13, 32: 18},
        "mobilenetv3_large": {2: 1, 4: 3, 8: 6, 16: 12, 32: 16}}
# torchvision.models.segmentation's MobileNetV3 `stage_indices` [0, 2, 4, 7, 13, 16]: the
# first block of each stride (tap_first_block=True), the last conv for the deepest.
TAPS_FIRST_BLOCK = {2: 0, 4: 2, 8: 4, 16: 7, 32: 16}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts(name):
    encoder = registry.build_part("encoder", {"name": name})
    assert count_params(variable_shapes(encoder, X)) == COUNTS[name]


def test_make_divisible_matches_torchvision():
    # torchvision._utils._make_divisible: round to the nearest multiple of 8, never
    # more than 10% below the value.
    assert [make_divisible(v) for v in (16, 17.6, 36, 44, 960 * 0.75, 9)] == \
        [16, 16, 40, 48, 720, 16]


def torchvision_taps(model, taps: dict[int, int], x) -> dict:
    torch = torch_refs.import_torch()
    outputs = []
    with torch.no_grad():
        y = torch_refs.to_nchw(x)
        for layer in model.features:
            y = layer(y)
            outputs.append(y)
    return {stride: torch_refs.to_nhwc(outputs[index]) for stride, index in taps.items()}


@pytest.mark.parametrize("name, builder, mapping", [
    ("mobilenetv2", "mobilenet_v2", "torchvision_mobilenet_v2"),
    ("mobilenetv3_large", "mobilenet_v3_large", "torchvision_mobilenet_v3_large"),
])
def test_features_match_torchvision(name, builder, mapping):
    torchvision = torch_refs.import_torchvision()
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = torch_refs.randomize_bn(getattr(torchvision.models, builder)()).eval()
    encoder = registry.build_part("encoder", {"name": name})
    variables = converted_variables(encoder, reference, mapping, X)
    assert_parity(features(encoder, variables, X), torchvision_taps(reference, TAPS[name], X),
                  name)
    if name == "mobilenetv3_large":
        # torchvision's DeepLabv3-MobileNetV3 backbone: dilated=True (output_stride 16),
        # tapped at its `stage_indices` (the first block of each stride, and the last conv).
        dilated = torchvision.models.mobilenet_v3_large(dilated=True)
        dilated.load_state_dict(reference.state_dict())
        encoder = registry.build_part("encoder", {"name": name, "output_stride": 16,
                                                  "tap_first_block": True})
        actual = features(encoder, variables, X)
        assert actual[32].shape[1:] == (4, 4, 960)
        assert_parity(actual, torchvision_taps(dilated.eval(), TAPS_FIRST_BLOCK, X),
                      f"{name} output_stride=16, first-block taps")


@pytest.mark.parametrize("output_stride", [16, 8])
def test_mobilenetv2_output_stride_and_deeplab_endpoint(output_stride):
    encoder = registry.build_part("encoder", {"name": "mobilenetv2", "include_last_conv": False,
                                              "output_stride": output_stride})
    shapes = variable_shapes(encoder, X)
    out = jax.eval_shape(lambda v: encoder.apply(v, X), shapes)
    assert out[32].shape == (1, 64 // output_stride, 64 // output_stride, 320)
    assert out[8].shape[1] == 8 and out[4].shape == (1, 16, 16, 24)
    # Without the 1280-channel conv: 2,223,872 - (320 * 1280 + 2 * 1280).
    assert count_params(shapes) == COUNTS["mobilenetv2"] - 320 * 1280 - 2 * 1280


def test_bad_output_stride_is_named():
    encoder = registry.build_part("encoder", {"name": "mobilenetv3_large", "output_stride": 12})
    with pytest.raises(ValueError, match="output_stride must be one of"):
        variable_shapes(encoder, X)
