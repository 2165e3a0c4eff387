"""U-Net weight map: hand-computed border weights, class balance, ignore pixels, exactness."""

import math

import numpy as np
import pytest

from segjax.data import weight_map
from segjax.data.weight_map import unet_weight_map


def _two_cells(gap: int) -> np.ndarray:
    """1 = cell interior, 0 = background; two 6-wide cells, `gap` background columns apart."""
    label = np.zeros((12, 40), np.int32)
    label[3:9, 10:16] = 1
    label[3:9, 16 + gap:22 + gap] = 1
    return label


@pytest.mark.parametrize("gap, d1_plus_d2", [(1, [2.0]), (2, [3.0, 3.0])])
def test_border_between_two_cells(gap, d1_plus_d2):
    label = _two_cells(gap)
    weights = unet_weight_map(label, w0=10.0, sigma=5.0, balance=False)
    # A gap pixel at distance 1 from one cell and d from the other: w = 1 + 10 exp(-(1+d)^2/50).
    gap_weights = weights[5, 16:16 + gap]
    expected = [1.0 + 10.0 * math.exp(-s ** 2 / 50.0) for s in d1_plus_d2]
    np.testing.assert_allclose(gap_weights, expected, rtol=1e-6)
    np.testing.assert_allclose(weights[label == 1], 1.0)  # no border term inside cells


def test_border_term_vanishes_far_from_cells():
    label = _two_cells(1)
    weights = unet_weight_map(label, w0=10.0, sigma=5.0, balance=False)
    # Column 39: d1 = 18 (to the right cell at column 21), d2 = 24; 10 exp(-42^2/50) ~ 5e-15.
    np.testing.assert_allclose(weights[:, 39], 1.0, atol=1e-6)
    single = np.zeros((20, 20), np.int32)
    single[5:10, 5:10] = 1
    np.testing.assert_array_equal(unet_weight_map(single, balance=False), 1.0)


def test_class_balance_and_ignore():
    label = np.zeros((4, 8), np.int32)
    label[:, 6:] = 1           # 8 pixels of class 1
    label[:, :2] = 255         # 8 ignored pixels, 16 of class 0
    weights = unet_weight_map(label, w0=0.0, balance=True, ignore_index=255)
    # w_c = n_valid / (K n_c): 24 / (2 * 16) = 0.75 and 24 / (2 * 8) = 1.5; mean 1 over valid.
    np.testing.assert_allclose(weights[:, 2:6], 0.75)
    np.testing.assert_allclose(weights[:, 6:], 1.5)
    np.testing.assert_array_equal(weights[:, :2], 0.0)
    ignored = _two_cells(1)
    ignored[5, 16] = 255
    assert unet_weight_map(ignored, balance=True)[5, 16] == 0.0


def test_windowed_distances_match_full_computation(isbi_root):
    from segjax.data.sources import FolderSource

    label = FolderSource(isbi_root, "train[3:4]", image_channels=1,
                         label_values=(0, 255))[0]["label"][:160, :160]
    instances, count = weight_map.cell_instances(label)
    assert count > 10
    d1, d2 = weight_map.nearest_two_distances(instances, count)  # every cell, whole image
    border = np.where(instances == 0, 10.0 * np.exp(-(d1 + d2) ** 2 / 50.0), 0.0)
    expected = weight_map.class_balance_weights(label) + border
    np.testing.assert_allclose(unet_weight_map(label), expected, atol=1e-5)


def test_bad_label_shape():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        unet_weight_map(np.zeros((2, 3, 1), np.int32))
