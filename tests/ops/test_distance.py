"""The device distance transform against scipy.ndimage.distance_transform_edt."""

import jax
import numpy as np
import pytest
from scipy import ndimage

from segjax.ops import distance


@pytest.mark.parametrize("shape,spacing", [((13, 17), None), ((5, 6, 7), (2.5, 1.0, 0.75))])
def test_squared_distance_matches_scipy(shape, spacing):
    rng = np.random.default_rng(len(shape))
    masks = rng.random((3, *shape)) < 0.05
    ours = jax.jit(lambda m: distance.squared_distance_to(m, spacing, spatial_axes=len(shape)))(
        masks)
    for mask, got in zip(masks, np.asarray(ours)):
        expected = ndimage.distance_transform_edt(~mask, sampling=spacing) ** 2
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


def test_chunked_lines_give_the_same_result(monkeypatch):
    mask = np.random.default_rng(0).random((2, 20, 24)) < 0.03
    whole = np.asarray(distance.squared_distance_to(mask, spatial_axes=2))
    monkeypatch.setattr(distance, "CHUNK_ELEMENTS", 24 * 24 * 3)   # 3 lines per chunk
    np.testing.assert_array_equal(np.asarray(distance.squared_distance_to(mask, spatial_axes=2)),
                                  whole)


def test_signed_distance_and_empty_or_full_maps():
    mask = np.zeros((7, 9), bool)
    mask[2:5, 3:7] = True
    signed = np.asarray(distance.signed_distance(mask))
    expected = (ndimage.distance_transform_edt(~mask) * ~mask
                - (ndimage.distance_transform_edt(mask) - 1) * mask)
    np.testing.assert_allclose(signed, expected, rtol=1e-6)
    assert signed[2, 3] == 0.0 and signed[3, 4] == -1.0
    assert signed[0, 0] == pytest.approx(np.hypot(2, 3))
    assert np.all(np.asarray(distance.signed_distance(np.zeros((4, 4), bool))) == 0)
    assert np.all(np.asarray(distance.signed_distance(np.ones((4, 4), bool))) == 0)
    assert np.all(np.isinf(np.asarray(distance.squared_distance_to(np.zeros((3, 3), bool)))))
