"""Joint image / label / weight augmentations as plain functions of (rng, example).

Every random transform is `fn(rng, example, ...) -> example`, where `rng` is
a `numpy.random.Generator` and `example` a dict with 'image' (*spatial, C),
'label' int32 (*spatial) (or (*spatial, K) channel-stack masks, which every
transform treats channel by channel) and optionally 'weight' float32
(*spatial) and 'instance' int32 (*spatial) instance ids (panoptic data, 0 = no instance);
other keys pass through. The spatial rank is read from the image: (H, W, C)
images and (D, H, W, C) volumes go through the same functions. Geometry is
applied to all of them alike; the interpolation differs: images
(bi/tri)linear, weights likewise, labels and instance ids nearest (a label
value is never interpolated, so outputs hold only values that were in the
input, plus `ignore_index` (labels) or 0 (instance ids) where pixels come
from outside the image). Images become float32 after the first
interpolating transform.

Axes: flips name the spatial axis from the end (hflip: columns W, vflip:
rows H, dflip: depth D of a volume); rot90 turns the (H, W) plane; a rotation
turns the (H, W) plane and, for a volume with `rotate_out_of_plane`, also the
(D, W) and (D, H) planes (not for anisotropic stacks such as serial-section
EM, whose depth spacing differs from the in-plane one).

`augment(rng, example, augment_config, ignore_index)` applies the transforms
config.data.augment enables, in a fixed order (scale, flips, rot90, rotation,
elastic, brightness/contrast); the pipeline then mirror-pads, crops and
normalises (volumes: `segjax.data.volume_patches` normalises first and cuts a patch
with the context these transforms consume). Each transform draws from `rng`
only when enabled, so the randomness of one example is a function of its
rng's seed alone.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

Example = dict


def _spatial_shape(example: Example) -> tuple[int, ...]:
    """(H, W) of an image (H, W, C), (D, H, W) of a volume (D, H, W, C)."""
    return tuple(example["image"].shape[:-1])


def _with_channels(pads, array: np.ndarray):
    """Spatial pads, extended by no padding for a channel-stack label's last axis."""
    return tuple(pads) + ((0, 0),) * (array.ndim - len(pads))


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
    """Resample at `coords` (rank, *spatial') (the source position of every output pixel).

    mode 'mirror' reflects the image at its borders (labels and weights alike);
    'constant' fills outside pixels with 0 (image, weight, instance) and ignore_index (label).
    """
    def image_fn(image):
        channels = [ndimage.map_coordinates(image[..., c].astype(np.float32), coords, order=1,
                                            mode=mode, cval=0.0)
                    for c in range(image.shape[-1])]
        return np.stack(channels, axis=-1)

    def label_fn(label):
        if label.ndim > coords.shape[0]:     # channel-stack masks
            return np.stack([label_fn(label[..., c]) for c in range(label.shape[-1])], axis=-1)
        return ndimage.map_coordinates(label, coords, order=0, mode=mode,
                                       cval=ignore_index).astype(np.int32)

    def weight_fn(weight):
        return ndimage.map_coordinates(weight.astype(np.float32), coords, order=1, mode=mode,
                                       cval=0.0)

    def instance_fn(instance):
        return ndimage.map_coordinates(instance, coords, order=0, mode=mode,
                                       cval=0).astype(np.int32)

    return _apply(example, image_fn, label_fn, weight_fn, instance_fn)


def random_scale(rng: np.random.Generator, example: Example, *, scale_range: Sequence[float],
                 ignore_index: int = 255) -> Example:
    """Resize by a factor drawn uniformly from scale_range = (lo, hi) (pixel-centre aligned)."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if lo <= 0 or hi < lo:
        raise ValueError(f"data.augment.scale must be (lo, hi) with 0 < lo <= hi, got "
                         f"{tuple(scale_range)}")
    scale = rng.uniform(lo, hi)
    axes = []
    for size in _spatial_shape(example):
        out = max(1, round(size * scale))
        axes.append((np.arange(out) + 0.5) * (size / out) - 0.5)
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))
    return warp(example, coords, mode="nearest", ignore_index=ignore_index)


def flip(example: Example, axis: int) -> Example:
    """Flip spatial `axis` of image, label and weight (2D: 0 rows, 1 columns; 3D: 0 depth)."""
    return _apply(example, lambda a: np.flip(a, axis).copy(), lambda a: np.flip(a, axis).copy(),
                  lambda a: np.flip(a, axis).copy())


def random_flip(rng: np.random.Generator, example: Example, *, axis: int) -> Example:
    """Flip spatial `axis` with probability 1/2 (2D: 1 horizontal, 0 vertical)."""
    return flip(example, axis) if rng.random() < 0.5 else example


def random_rot90(rng: np.random.Generator, example: Example) -> Example:
    """Rotate the (H, W) plane by k * 90 degrees, k uniform in {0, 1, 2, 3}."""
    k = int(rng.integers(4))
    rank = len(_spatial_shape(example))
    rotate = lambda a: np.rot90(a, k, axes=(rank - 2, rank - 1)).copy()  # noqa: E731
    return _apply(example, rotate, rotate, rotate)


def plane_rotation(rank: int, axes: tuple[int, int], angle: float) -> np.ndarray:
    """(rank, rank) matrix turning the plane of spatial `axes` by `angle` radians."""
    matrix = np.eye(rank)
    first, second = axes
    cos, sin = math.cos(angle), math.sin(angle)
    matrix[first, first], matrix[first, second] = cos, -sin
    matrix[second, first], matrix[second, second] = sin, cos
    return matrix


def rotation_planes(rank: int, out_of_plane: bool) -> list[tuple[int, int]]:
    """The planes a rotation turns: (H, W); for a volume out of plane also (D, W), (D, H)."""
    planes = [(rank - 2, rank - 1)]
    if rank == 3 and out_of_plane:
        planes += [(0, 2), (0, 1)]
    return planes


def random_rotate(rng: np.random.Generator, example: Example, *, max_degrees: float,
                  out_of_plane: bool = False, ignore_index: int = 255) -> Example:
    """Rotate about the centre by angles uniform in [-max_degrees, max_degrees], one per
    plane of `rotation_planes` (an image: one angle in its plane)."""
    shape = _spatial_shape(example)
    rank = len(shape)
    matrix = np.eye(rank)
    for plane in rotation_planes(rank, out_of_plane):
        angle = math.radians(rng.uniform(-max_degrees, max_degrees))
        matrix = matrix @ plane_rotation(rank, plane, angle)
    centre = (np.asarray(shape, np.float64) - 1) / 2
    grid = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float64)
    offsets = grid.reshape(rank, -1) - centre[:, None]
    coords = (centre[:, None] + matrix @ offsets).reshape((rank, *shape))
    return warp(example, coords, mode="constant", ignore_index=ignore_index)


def _cubic_interpolation_matrix(length: int, grid: int) -> np.ndarray:
    """(length, grid): row i holds the cubic-spline weights of the grid values at pixel i,
    the grid spanning [0, length - 1] (mirror boundary)."""
    at = np.linspace(0, grid - 1, length)[None]
    return np.stack([ndimage.map_coordinates(unit, at, order=3, mode="mirror")
                     for unit in np.eye(grid)], axis=-1)


def elastic_displacement(rng: np.random.Generator, shape: Sequence[int], *, sigma: float,
                         grid: int = 3) -> np.ndarray:
    """(rank, *shape) smooth displacement: N(0, sigma) vectors on a lattice of `grid` points
    per axis spanning the image or volume (corners included), interpolated (bi/tri)cubically
    to every pixel.

    The tensor-product spline is separable, so the field is the coarse lattice
    multiplied by one interpolation matrix per axis (2D: R_rows @ coarse @ R_cols^T; the
    same values as map_coordinates on the full grid, at a fraction of the cost).
    """
    rank = len(shape)
    coarse = rng.normal(0.0, sigma, size=(rank,) + (grid,) * rank)
    matrices = [_cubic_interpolation_matrix(int(n), grid) for n in shape]
    lattice, pixels = "ijk"[:rank], "hwd"[:rank]
    spec = ",".join(p + i for p, i in zip(pixels, lattice))
    return np.einsum(f"{spec},c{lattice}->c{pixels}", *matrices, coarse, optimize=True)


def elastic_deform(rng: np.random.Generator, example: Example, *, sigma: float, grid: int = 3,
                   ignore_index: int = 255) -> Example:
    """The U-Net paper's elastic deformation: a smooth random warp (borders mirrored)."""
    if grid < 2:
        raise ValueError(f"data.augment.elastic_grid must be >= 2, got {grid}")
    shape = _spatial_shape(example)
    displacement = elastic_displacement(rng, shape, sigma=sigma, grid=grid)
    coords = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float64) + displacement
    return warp(example, coords, mode="mirror", ignore_index=ignore_index)


def random_brightness_contrast(rng: np.random.Generator, example: Example, *,
                               brightness: float, contrast: float,
                               value_range: tuple[float, float] | None = (0.0, 255.0)
                               ) -> Example:
    """Add a brightness offset uniform in +-brightness * (the range's width) and scale the
    contrast about the image mean by a factor uniform in [1 - contrast, 1 + contrast]; clip
    to `value_range`. `value_range=None` (normalised volumes): offsets in units of the
    standard deviation, no clipping."""
    width = 1.0 if value_range is None else value_range[1] - value_range[0]
    offset = rng.uniform(-brightness, brightness) * width
    factor = rng.uniform(1.0 - contrast, 1.0 + contrast)
    image = example["image"].astype(np.float32)
    image = (image - image.mean()) * factor + image.mean() + offset
    if value_range is not None:
        image = np.clip(image, *value_range)
    return dict(example, image=image)


def mirror_pad(example: Example, margin: int, *, ignore_index: int = 255) -> Example:
    """Pad by `margin` on every side: image mirrored (np.pad 'reflect'), label with
    ignore_index, weight and instance ids with 0. The U-Net paper's overlap-tile context."""
    if margin <= 0:
        return example
    shape = _spatial_shape(example)
    if margin >= min(shape):
        raise ValueError(f"data.pad_margin={margin} must be smaller than the image "
                         f"({'x'.join(map(str, shape))}) to mirror it")
    pads = ((margin, margin),) * len(shape)
    return _apply(example,
                  lambda a: np.pad(a, pads + ((0, 0),), mode="reflect"),
                  lambda a: np.pad(a, _with_channels(pads, a), constant_values=ignore_index),
                  lambda a: np.pad(a, pads, constant_values=0),
                  lambda a: np.pad(a, pads, constant_values=0))


def random_crop(rng: np.random.Generator, example: Example, size: Sequence[int], *,
                ignore_index: int = 255) -> Example:
    """Crop a uniformly placed `size` window; a smaller example is first padded at the
    end of each axis (image and weight with 0, label with ignore_index)."""
    shape = _spatial_shape(example)
    size = tuple(int(s) for s in size)
    if len(size) != len(shape):
        raise ValueError(f"data.crop={size} has {len(size)} axes; the example has "
                         f"{len(shape)} spatial axes ({'x'.join(map(str, shape))})")
    example = pad_to(example, size, ignore_index=ignore_index)
    shape = _spatial_shape(example)
    starts = [int(rng.integers(n - c + 1)) for n, c in zip(shape, size)]
    return crop(example, starts, size)


def pad_to(example: Example, size: Sequence[int], *, ignore_index: int = 255) -> Example:
    """Pad each spatial axis shorter than `size` at its end (image, weight and instance ids
    with 0, label with ignore_index)."""
    shape = _spatial_shape(example)
    pads = tuple((0, max(int(c) - n, 0)) for n, c in zip(shape, size))
    if not any(hi for _, hi in pads):
        return example
    return _apply(example,
                  lambda a: np.pad(a, pads + ((0, 0),) * (a.ndim - len(pads))),
                  lambda a: np.pad(a, _with_channels(pads, a), constant_values=ignore_index),
                  lambda a: np.pad(a, pads), lambda a: np.pad(a, pads))


def crop(example: Example, starts: Sequence[int], size: Sequence[int]) -> Example:
    """The window of `size` at `starts` (inside the example) of image, label and weight."""
    window = tuple(slice(int(s), int(s) + int(c)) for s, c in zip(starts, size))
    take = lambda a: a[window]  # noqa: E731
    return _apply(example, take, take, take)


def center_crop(example: Example, size: Sequence[int]) -> Example:
    """The centred window of `size` (the extra pixel of an odd difference at the end)."""
    shape = _spatial_shape(example)
    if any(c > n for n, c in zip(shape, size)):
        raise ValueError(f"center_crop: {tuple(size)} is larger than the example {shape}")
    return crop(example, [(n - c) // 2 for n, c in zip(shape, size)], size)


def augment(rng: np.random.Generator, example: Example, augment_config, *,
            ignore_index: int = 255,
            value_range: tuple[float, float] | None = (0.0, 255.0)) -> Example:
    """The augmentations data.augment enables, in a fixed order.

    `value_range` is the image's intensity range for brightness/contrast (None
    for normalised volumes). Keys that a config written before volumes lacks
    (dflip, rotate_out_of_plane) count as off.
    """
    cfg = augment_config
    rank = len(_spatial_shape(example))
    if tuple(cfg.scale) != (1.0, 1.0):
        example = random_scale(rng, example, scale_range=cfg.scale, ignore_index=ignore_index)
    if cfg.hflip:
        example = random_flip(rng, example, axis=rank - 1)
    if cfg.vflip:
        example = random_flip(rng, example, axis=rank - 2)
    if rank == 3 and cfg.get("dflip", False):
        example = random_flip(rng, example, axis=0)
    if cfg.rot90:
        example = random_rot90(rng, example)
    if cfg.rotate_degrees > 0:
        example = random_rotate(rng, example, max_degrees=cfg.rotate_degrees,
                                out_of_plane=bool(cfg.get("rotate_out_of_plane", False)),
                                ignore_index=ignore_index)
    if cfg.elastic_sigma > 0:
        example = elastic_deform(rng, example, sigma=cfg.elastic_sigma, grid=cfg.elastic_grid,
                                 ignore_index=ignore_index)
    if cfg.brightness > 0 or cfg.contrast > 0:
        example = random_brightness_contrast(rng, example, brightness=cfg.brightness,
                                             contrast=cfg.contrast, value_range=value_range)
    return example
