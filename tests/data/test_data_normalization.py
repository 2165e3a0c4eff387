"""Normalisation (segjax.data.normalization): fixed mean/std, per-volume z-scores, and parts of an
image normalised as the whole."""

import ml_collections
import numpy as np
import pytest

from segjax.config import base_config
from segjax.data import normalization


def test_fixed():
    image = np.array([[[255, 0], [51, 102]]], np.uint8)
    out = normalization.fixed(image, mean=(0.5, 0.2), std=(0.25, 0.4))
    np.testing.assert_allclose(out, [[[2.0, -0.5], [-1.2, 0.5]]], atol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="data.mean"):
        normalization.fixed(image, mean=(0.1, 0.2, 0.3), std=(1.0,))


def test_zscore_over_the_nonzero_foreground():
    image = np.zeros((2, 2, 2, 2), np.float32)
    image[0, 0, 0] = [2.0, 10.0]
    image[0, 0, 1] = [4.0, 0.0]               # foreground: some channel is non-zero
    out = normalization.zscore(image, over="nonzero")
    # channel 0 over the 2 foreground voxels: mean 3, std 1; channel 1: mean 5, std 5
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 1.0])
    np.testing.assert_allclose(out[0, 0, 1], [1.0, -1.0])
    assert np.all(out[1] == 0) and np.all(out[0, 1] == 0)
    every = normalization.zscore(image, over="all")
    assert abs(float(every[..., 0].mean())) < 1e-6 and float(every[..., 0].std()) == \
        pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="zscore_over"):
        normalization.zscore(image, over="brain")


@pytest.mark.parametrize("method, over", [("fixed", "nonzero"), ("zscore", "nonzero"),
                                          ("zscore", "all")])
def test_a_part_is_normalised_with_the_whole_images_statistics(method, over):
    """normalizer(image)(part) == normalize(image)[part]; a tile's own z-score would differ."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (6, 10, 12, 2)).astype(np.float32)
    image[:, :3] = 0                                      # background for 'nonzero'
    data = base_config().data
    data.normalization, data.volume.zscore_over = method, over
    whole = normalization.normalize(image, data)
    part = (slice(1, 5), slice(2, 8), slice(3, 12))
    np.testing.assert_array_equal(normalization.normalizer(image, data)(image[part]),
                                  whole[part])
    if method == "zscore":
        assert not np.allclose(normalization.normalize(image[part], data), whole[part])


def test_unknown_normalization_is_named():
    data = ml_collections.ConfigDict({"normalization": "minmax"})
    with pytest.raises(ValueError, match="data.normalization must be one of"):
        normalization.normalize(np.zeros((2, 2, 1)), data)
