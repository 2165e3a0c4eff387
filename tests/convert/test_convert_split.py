"""convert.core's Target.split: a fused projection cut into one tensor per sub-module."""

import numpy as np
import pytest

from segjax.convert.core import ConversionError, Target, convert, rules


def variables():
    shape = {"kernel": np.zeros((3, 2), np.float32), "bias": np.zeros((2,), np.float32)}
    return {"params": {"attention": {"key": dict(shape), "value": dict(shape)}}}


def test_split_cuts_along_the_output_axis():
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)  # torch Linear (out=2 x 2, in=3)
    bias = np.arange(4, dtype=np.float32)
    mapping = rules((r"attn\.kv", Target("attention", split=("key", "value"))))
    converted, report = convert({"attn.kv.weight": weight, "attn.kv.bias": bias}, variables(),
                                mapping)
    params = converted["params"]["attention"]
    np.testing.assert_array_equal(params["key"]["kernel"], weight[:2].T)
    np.testing.assert_array_equal(params["value"]["kernel"], weight[2:].T)
    np.testing.assert_array_equal(params["value"]["bias"], bias[2:])
    assert report.converted["attn.kv.weight[value]"] == "params/attention/value/kernel"


def test_split_of_an_uneven_tensor_is_an_error():
    mapping = rules((r"attn\.kv", Target("attention", split=("key", "value"))))
    with pytest.raises(ConversionError, match="does not split into 2 equal parts"):
        convert({"attn.kv.bias": np.zeros(3, np.float32)}, variables(), mapping, strict=False)
