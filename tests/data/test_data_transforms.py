"""Joint transforms: geometry applied alike, labels never interpolated, hand-checked values."""

import numpy as np
import pytest
from scipy import ndimage

from segjax.config import base_config
from segjax.data import transforms


def _example(height=24, width=30, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, (height, width)).astype(np.int32)
    image = np.stack([label * 50 + 10, np.arange(height * width).reshape(height, width) % 256],
                     -1).astype(np.uint8)
    weight = rng.random((height, width)).astype(np.float32)
    return {"image": image, "label": label, "weight": weight, "name": "x"}


def test_flip_flips_image_label_and_weight():
    example = _example()
    flipped = transforms.flip(example, axis=1)
    np.testing.assert_array_equal(flipped["image"], example["image"][:, ::-1])
    np.testing.assert_array_equal(flipped["label"], example["label"][:, ::-1])
    np.testing.assert_array_equal(flipped["weight"], example["weight"][:, ::-1])
    assert flipped["name"] == "x"
    vertical = transforms.flip(example, axis=0)
    np.testing.assert_array_equal(vertical["label"], example["label"][::-1])


def test_rot90_keeps_image_and_label_aligned():
    example = _example()
    for seed in range(4):
        out = transforms.random_rot90(np.random.default_rng(seed), example)
        np.testing.assert_array_equal(out["image"][..., 0], out["label"] * 50 + 10)
        k = [k for k in range(4) if np.rot90(example["label"], k).shape == out["label"].shape
             and np.array_equal(np.rot90(example["label"], k), out["label"])]
        assert k and np.array_equal(np.rot90(example["weight"], k[0]), out["weight"])


def test_elastic_with_zero_displacement_is_identity():
    example = _example()
    out = transforms.elastic_deform(np.random.default_rng(0), example, sigma=0.0)
    np.testing.assert_allclose(out["image"], example["image"], atol=1e-4)
    np.testing.assert_array_equal(out["label"], example["label"])
    np.testing.assert_allclose(out["weight"], example["weight"], atol=1e-6)


def test_elastic_displacement_passes_through_the_coarse_grid():
    sigma = 10.0
    field = transforms.elastic_displacement(np.random.default_rng(3), (21, 31), sigma=sigma,
                                            grid=3)
    coarse = np.random.default_rng(3).normal(0.0, sigma, (2, 3, 3))
    np.testing.assert_allclose(field[:, ::10, ::15], coarse, atol=1e-9)
    assert field.shape == (2, 21, 31)
    # Separable evaluation == bicubic spline interpolation of the 2D grid.
    at = np.stack(np.meshgrid(np.linspace(0, 2, 21), np.linspace(0, 2, 31), indexing="ij"))
    reference = [ndimage.map_coordinates(c, at, order=3, mode="mirror") for c in coarse]
    np.testing.assert_allclose(field, np.stack(reference), atol=1e-9)


def test_elastic_and_scale_and_rotate_never_interpolate_labels():
    example = _example()
    values = set(np.unique(example["label"]))
    rng = np.random.default_rng(1)
    deformed = transforms.elastic_deform(rng, example, sigma=10.0)
    assert set(np.unique(deformed["label"])) <= values
    assert not np.array_equal(deformed["label"], example["label"])
    scaled = transforms.random_scale(rng, example, scale_range=(0.6, 1.7))
    assert set(np.unique(scaled["label"])) <= values
    rotated = transforms.random_rotate(rng, example, max_degrees=30.0, ignore_index=255)
    assert set(np.unique(rotated["label"])) <= values | {255}


def test_scale_by_two_replicates_labels():
    label = np.array([[0, 1], [2, 3]], np.int32)
    example = {"image": np.zeros((2, 2, 1), np.uint8), "label": label}
    out = transforms.random_scale(np.random.default_rng(0), example, scale_range=(2.0, 2.0))
    np.testing.assert_array_equal(out["label"], np.kron(label, np.ones((2, 2), np.int32)))
    with pytest.raises(ValueError, match="data.augment.scale"):
        transforms.random_scale(np.random.default_rng(0), example, scale_range=(2.0, 1.0))


def test_mirror_pad():
    example = _example(6, 7)
    out = transforms.mirror_pad(example, 2, ignore_index=255)
    assert out["image"].shape == (10, 11, 2)
    np.testing.assert_array_equal(out["image"][2:-2, 2:-2], example["image"])
    np.testing.assert_array_equal(out["image"][0, 2:-2], example["image"][2])  # reflect
    np.testing.assert_array_equal(out["image"][2:-2, 1], example["image"][:, 1])
    assert (out["label"][:2] == 255).all() and (out["label"][:, -2:] == 255).all()
    np.testing.assert_array_equal(out["label"][2:-2, 2:-2], example["label"])
    assert (out["weight"][:, :2] == 0).all()
    with pytest.raises(ValueError, match="data.pad_margin"):
        transforms.mirror_pad(example, 6)


def test_random_crop_geometry():
    example = _example(24, 30)
    out = transforms.random_crop(np.random.default_rng(4), example, (10, 12))
    assert out["image"].shape == (10, 12, 2) and out["label"].shape == (10, 12)
    # The weights are distinct random floats, so the first one locates the window.
    (top,), (left,) = np.nonzero(example["weight"] == out["weight"][0, 0])
    for key in ("image", "label", "weight"):
        np.testing.assert_array_equal(out[key], example[key][top:top + 10, left:left + 12])
    small = transforms.random_crop(np.random.default_rng(0), _example(5, 6), (8, 9),
                                   ignore_index=255)
    assert small["label"].shape == (8, 9)
    np.testing.assert_array_equal(small["label"][:5, :6], _example(5, 6)["label"])
    assert (small["label"][5:] == 255).all() and (small["label"][:, 6:] == 255).all()
    assert (small["image"][5:] == 0).all() and (small["weight"][:, 6:] == 0).all()


def test_brightness_contrast_stays_in_range():
    example = _example()
    out = transforms.random_brightness_contrast(np.random.default_rng(0), example,
                                                brightness=0.5, contrast=0.5)
    assert out["image"].min() >= 0 and out["image"].max() <= 255
    np.testing.assert_array_equal(out["label"], example["label"])


def test_augment_follows_config_and_is_deterministic():
    config = base_config().data.augment
    config.hflip, config.vflip, config.rot90, config.elastic_sigma = True, True, True, 8.0
    config.scale, config.brightness = (0.8, 1.2), 0.1
    example = _example()
    first = transforms.augment(np.random.default_rng(9), example, config)
    second = transforms.augment(np.random.default_rng(9), example, config)
    for key in ("image", "label", "weight"):
        np.testing.assert_array_equal(first[key], second[key])
    config.hflip = config.vflip = config.rot90 = False
    config.elastic_sigma, config.scale, config.brightness = 0.0, (1.0, 1.0), 0.0
    unchanged = transforms.augment(np.random.default_rng(9), example, config)
    assert unchanged is example
