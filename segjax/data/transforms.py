"""Joint image / label / weight augmentations as plain functions of (rng, example).

Every random transform is `fn(rng, example, ...) -> example`, where `rng` is
a `numpy.random.Generator` and `example` a dict with 'image' (H, W, C),
'label' int32 (H, W) and optionally 'weight' float32 (H, W) and 'instance'
int32 (H, W) instance ids (panoptic data, 0 = no instance); other keys pass
through. Geometry is applied to all of them alike; the interpolation differs:
images bilinear, weights bilinear, labels and instance ids nearest (a label
value is never interpolated, so outputs hold only values that were in the
input, plus `ignore_index` (labels) or 0 (instance ids) where pixels come
from outside the image). Images become
float32 in [0, 255] after the first interpolating transform.

`augment(rng, example, augment_config, ignore_index)` applies the transforms
config.data.augment enables, in a fixed order (scale, flips, rot90, rotation,
elastic, brightness/contrast); the pipeline then mirror-pads, crops and
normalises. Each transform draws from `rng` only when enabled, so the
randomness of one example is a function of its rng's seed alone.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

Example = dict


def _spatial_shape(example: Example) -> tuple[int, int]:
    return tuple(example["image"].shape[:2])


def _apply(example: Example, image_fn, label_fn, weight_fn, instance_fn=None) -> Example:
    """Applies the functions to their arrays; `instance_fn` (default `label_fn`, for
    transforms that fill nothing) to the instance ids."""
    out = dict(example)
    out["image"] = image_fn(example["image"])
    if example.get("label") is not None:
        out["label"] = label_fn(example["label"])
    if example.get("weight") is not None:
        out["weight"] = weight_fn(example["weight"])
    if example.get("instance") is not None:
        out["instance"] = (instance_fn or label_fn)(example["instance"])
    return out


def warp(example: Example, coords: np.ndarray, *, mode: str, ignore_index: int) -> Example:
    """Resample at `coords` (2, H', W') (source row, col per output pixel).

    mode 'mirror' reflects the image at its borders (labels and weights alike);
    'constant' fills outside pixels with 0 (image, weight, instance) and ignore_index (label).
    """
    def image_fn(image):
        channels = [ndimage.map_coordinates(image[..., c].astype(np.float32), coords, order=1,
                                            mode=mode, cval=0.0)
                    for c in range(image.shape[-1])]
        return np.stack(channels, axis=-1)

    def label_fn(label):
        return ndimage.map_coordinates(label, coords, order=0, mode=mode,
                                       cval=ignore_index).astype(np.int32)

    def instance_fn(instance):
        return ndimage.map_coordinates(instance, coords, order=0, mode=mode,
                                       cval=0).astype(np.int32)

    def weight_fn(weight):
        return ndimage.map_coordinates(weight.astype(np.float32), coords, order=1, mode=mode,
                                       cval=0.0)

    return _apply(example, image_fn, label_fn, weight_fn, instance_fn)


def random_scale(rng: np.random.Generator, example: Example, *, scale_range: Sequence[float],
                 ignore_index: int = 255) -> Example:
    """Resize by a factor drawn uniformly from scale_range = (lo, hi) (pixel-centre aligned)."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if lo <= 0 or hi < lo:
        raise ValueError(f"data.augment.scale must be (lo, hi) with 0 < lo <= hi, got "
                         f"{tuple(scale_range)}")
    scale = rng.uniform(lo, hi)
    height, width = _spatial_shape(example)
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    rows = (np.arange(out_h) + 0.5) * (height / out_h) - 0.5
    cols = (np.arange(out_w) + 0.5) * (width / out_w) - 0.5
    coords = np.stack(np.meshgrid(rows, cols, indexing="ij"))
    return warp(example, coords, mode="nearest", ignore_index=ignore_index)


def flip(example: Example, axis: int) -> Example:
    """Flip rows (axis 0) or columns (axis 1) of image, label and weight."""
    return _apply(example, lambda a: np.flip(a, axis).copy(), lambda a: np.flip(a, axis).copy(),
                  lambda a: np.flip(a, axis).copy())


def random_flip(rng: np.random.Generator, example: Example, *, axis: int) -> Example:
    """Flip with probability 1/2: axis 1 horizontal, axis 0 vertical."""
    return flip(example, axis) if rng.random() < 0.5 else example


def random_rot90(rng: np.random.Generator, example: Example) -> Example:
    """Rotate by k * 90 degrees, k uniform in {0, 1, 2, 3}."""
    k = int(rng.integers(4))
    rotate = lambda a: np.rot90(a, k, axes=(0, 1)).copy()  # noqa: E731
    return _apply(example, rotate, rotate, rotate)


def random_rotate(rng: np.random.Generator, example: Example, *, max_degrees: float,
                  ignore_index: int = 255) -> Example:
    """Rotate about the centre by an angle uniform in [-max_degrees, max_degrees]."""
    angle = math.radians(rng.uniform(-max_degrees, max_degrees))
    height, width = _spatial_shape(example)
    rows, cols = np.mgrid[:height, :width].astype(np.float64)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    cos, sin = math.cos(angle), math.sin(angle)
    coords = np.stack([cy + cos * (rows - cy) - sin * (cols - cx),
                       cx + sin * (rows - cy) + cos * (cols - cx)])
    return warp(example, coords, mode="constant", ignore_index=ignore_index)


def _cubic_interpolation_matrix(length: int, grid: int) -> np.ndarray:
    """(length, grid): row i holds the cubic-spline weights of the grid values at pixel i,
    the grid spanning [0, length - 1] (mirror boundary)."""
    at = np.linspace(0, grid - 1, length)[None]
    return np.stack([ndimage.map_coordinates(unit, at, order=3, mode="mirror")
                     for unit in np.eye(grid)], axis=-1)


def elastic_displacement(rng: np.random.Generator, shape: Sequence[int], *, sigma: float,
                         grid: int = 3) -> np.ndarray:
    """(2, H, W) smooth displacement: N(0, sigma) vectors on a grid x grid lattice spanning
    the image (corners included), interpolated bicubically to every pixel.

    The tensor-product spline is separable, so the field is R_rows @ coarse @ R_cols^T
    (the same values as map_coordinates on the 2D grid, at a fraction of the cost).
    """
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    rows = _cubic_interpolation_matrix(int(shape[0]), grid)
    cols = _cubic_interpolation_matrix(int(shape[1]), grid)
    return np.einsum("hi,cij,wj->chw", rows, coarse, cols, optimize=True)


def elastic_deform(rng: np.random.Generator, example: Example, *, sigma: float, grid: int = 3,
                   ignore_index: int = 255) -> Example:
    """The U-Net paper's elastic deformation: a smooth random warp (borders mirrored)."""
    if grid < 2:
        raise ValueError(f"data.augment.elastic_grid must be >= 2, got {grid}")
    shape = _spatial_shape(example)
    displacement = elastic_displacement(rng, shape, sigma=sigma, grid=grid)
    coords = np.mgrid[:shape[0], :shape[1]].astype(np.float64) + displacement
    return warp(example, coords, mode="mirror", ignore_index=ignore_index)


def random_brightness_contrast(rng: np.random.Generator, example: Example, *,
                               brightness: float, contrast: float) -> Example:
    """Add a brightness offset uniform in +-brightness * 255 and scale the contrast about the
    image mean by a factor uniform in [1 - contrast, 1 + contrast]; clip to [0, 255]."""
    offset = rng.uniform(-brightness, brightness) * 255.0
    factor = rng.uniform(1.0 - contrast, 1.0 + contrast)
    image = example["image"].astype(np.float32)
    image = (image - image.mean()) * factor + image.mean() + offset
    return dict(example, image=np.clip(image, 0.0, 255.0))


def mirror_pad(example: Example, margin: int, *, ignore_index: int = 255) -> Example:
    """Pad by `margin` on every side: image mirrored (np.pad 'reflect'), label with
    ignore_index, weight and instance ids with 0. The U-Net paper's overlap-tile context."""
    if margin <= 0:
        return example
    height, width = _spatial_shape(example)
    if margin >= min(height, width):
        raise ValueError(f"data.pad_margin={margin} must be smaller than the image "
                         f"({height}x{width}) to mirror it")
    pads = ((margin, margin), (margin, margin))
    return _apply(example,
                  lambda a: np.pad(a, pads + ((0, 0),) * (a.ndim - 2), mode="reflect"),
                  lambda a: np.pad(a, pads, constant_values=ignore_index),
                  lambda a: np.pad(a, pads, constant_values=0),
                  lambda a: np.pad(a, pads, constant_values=0))


def random_crop(rng: np.random.Generator, example: Example, size: Sequence[int], *,
                ignore_index: int = 255) -> Example:
    """Crop a uniformly placed `size` window; a smaller example is first padded at the
    bottom/right (image, weight and instance ids with 0, label with ignore_index)."""
    crop_h, crop_w = int(size[0]), int(size[1])
    height, width = _spatial_shape(example)
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        pads = ((0, pad_h), (0, pad_w))
        example = _apply(example,
                         lambda a: np.pad(a, pads + ((0, 0),) * (a.ndim - 2)),
                         lambda a: np.pad(a, pads, constant_values=ignore_index),
                         lambda a: np.pad(a, pads), lambda a: np.pad(a, pads))
        height, width = height + pad_h, width + pad_w
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    window = lambda a: a[top:top + crop_h, left:left + crop_w]  # noqa: E731
    return _apply(example, window, window, window)


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(image / 255 - mean) / std per channel, float32 (mean/std of length 1 or C)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    channels = image.shape[-1]
    for name, value in (("data.mean", mean), ("data.std", std)):
        if value.ndim != 1 or value.size not in (1, channels):
            raise ValueError(f"{name} has {value.size} values; expected 1 or {channels} "
                             "(one per image channel)")
    return ((image.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def augment(rng: np.random.Generator, example: Example, augment_config, *,
            ignore_index: int = 255) -> Example:
    """The augmentations data.augment enables, in a fixed order."""
    cfg = augment_config
    if tuple(cfg.scale) != (1.0, 1.0):
        example = random_scale(rng, example, scale_range=cfg.scale, ignore_index=ignore_index)
    if cfg.hflip:
        example = random_flip(rng, example, axis=1)
    if cfg.vflip:
        example = random_flip(rng, example, axis=0)
    if cfg.rot90:
        example = random_rot90(rng, example)
    if cfg.rotate_degrees > 0:
        example = random_rotate(rng, example, max_degrees=cfg.rotate_degrees,
                                ignore_index=ignore_index)
    if cfg.elastic_sigma > 0:
        example = elastic_deform(rng, example, sigma=cfg.elastic_sigma, grid=cfg.elastic_grid,
                                 ignore_index=ignore_index)
    if cfg.brightness > 0 or cfg.contrast > 0:
        example = random_brightness_contrast(rng, example, brightness=cfg.brightness,
                                             contrast=cfg.contrast)
    return example
