"""Aligned Xception-65 (DeepLabv3+): parameter count from the DeepLab definition,
dilation schedule, and feature parity with timm's `xception65` (a port of
DeepLab's TF weights; random weights and BN stats here)."""

from __future__ import annotations

import re

import jax
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs
from tests.models.encoders.encoder_parity import (assert_parity, conv_dilations,
                                                  converted_variables, features, random_input,
                                                  variable_shapes)

X = random_input((1, 64, 64, 3))


def separable(cin: int, cout: int) -> int:
    """3x3 depthwise + BN, 1x1 pointwise + BN (no biases)."""
    return cin * 9 + 2 * cin + cin * cout + 2 * cout


def unit(cin: int, depths, shortcut: bool) -> int:
    total, c = 0, cin
    for d in depths:
        total, c = total + separable(c, d), d
    return total + (cin * depths[-1] + 2 * depths[-1] if shortcut else 0)


# DeepLab's xception_65 (TF models research/deeplab/core/xception.py): stem 3x3 conv 32 (s2)
# and 3x3 conv 64, entry flow units 128/256/728 with 1x1 shortcuts, 16 middle units of 728,
# exit units (728, 1024, 1024) with shortcut and (1536, 1536, 2048) without. This formula
# gives 37,867,312, which is also timm's xception65 (39,916,312 with its 2048x1000 fc head).
XCEPTION65_PARAMS = (27 * 32 + 64 + 32 * 9 * 64 + 128
                     + unit(64, (128,) * 3, True) + unit(128, (256,) * 3, True)
                     + unit(256, (728,) * 3, True) + 16 * unit(728, (728,) * 3, False)
                     + unit(728, (728, 1024, 1024), True) + unit(1024, (1536, 1536, 2048), False))


def test_parameter_count_matches_the_deeplab_definition():
    assert XCEPTION65_PARAMS == 37_867_312
    encoder = registry.build_part("encoder", {"name": "xception65"})
    assert count_params(variable_shapes(encoder, X)) == XCEPTION65_PARAMS


@pytest.mark.slow
def test_features_match_timm_xception65_at_output_strides_32_and_16():
    timm = torch_refs.import_timm()
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = torch_refs.randomize_bn(timm.create_model("xception65", pretrained=False)).eval()
    state = {re.sub(r"^(stem|blocks)\.", r"\1_", name): value  # features_only flattens names
             for name, value in reference.state_dict().items() if not name.startswith("head")}
    variables = None
    for output_stride in (32, 16):
        encoder = registry.build_part("encoder", {"name": "xception65",
                                                  "output_stride": output_stride})
        if variables is None:
            variables = converted_variables(encoder, reference, "timm_xception", X)
        taps = timm.create_model("xception65", pretrained=False, features_only=True,
                                 output_stride=output_stride)
        taps.load_state_dict(state)
        with torch.no_grad():
            outputs = taps.eval()(torch_refs.to_nchw(X))
        expected = {2 ** (i + 1): torch_refs.to_nhwc(y) for i, y in enumerate(outputs)}
        actual = features(encoder, variables, X)
        # timm taps the ReLU that starts the strided conv; DeepLab's decoder endpoint (ours)
        # is the pointwise BN output before it.
        actual = {k: (v if k == 32 else jax.nn.relu(v)) for k, v in actual.items()}
        assert actual[32].shape[1] == 64 // output_stride
        assert_parity(actual, expected, f"xception65 output_stride={output_stride}")


def test_dilation_schedule_and_multi_grid():
    # Output stride 16: exit unit 19 keeps rate 1 (its stride removed), unit 20 runs at rate 2
    # times multi-grid (1, 2, 4). Output stride 8: the middle flow runs at rate 2.
    encoder = registry.build_part("encoder", {"name": "xception65", "output_stride": 16,
                                              "multi_grid": (1, 2, 4)})
    rates = conv_dilations(encoder, X, "blocks_")
    assert [rates[f"blocks_20/conv{i}/depthwise/conv"] for i in (1, 2, 3)] == [2, 4, 8]
    assert rates["blocks_19/conv3/depthwise/conv"] == 1
    encoder = registry.build_part("encoder", {"name": "xception65", "output_stride": 8})
    rates = conv_dilations(encoder, X, "blocks_")
    assert rates["blocks_2/conv3/depthwise/conv"] == 1
    assert rates["blocks_10/conv1/depthwise/conv"] == 2
    assert rates["blocks_20/conv1/depthwise/conv"] == 4
    shapes = variable_shapes(encoder, X)
    out = jax.eval_shape(lambda v: encoder.apply(v, X), shapes)
    assert {k: v.shape for k, v in out.items()} == {
        2: (1, 32, 32, 128), 4: (1, 16, 16, 256), 8: (1, 8, 8, 728), 16: (1, 8, 8, 1024),
        32: (1, 8, 8, 2048)}


def test_bad_multi_grid_is_named():
    encoder = registry.build_part("encoder", {"name": "xception65", "multi_grid": (1, 2)})
    with pytest.raises(ValueError, match="multi_grid needs 3 rates"):
        variable_shapes(encoder, X)
