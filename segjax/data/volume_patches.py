"""Training patches of volumes: foreground oversampling, augmentation context, the crop.

`training_patch` (called by `segjax.data.pipeline` for every volume example):
normalise the whole volume (`segjax.data.normalization`), choose a patch centre
(with probability data.volume.foreground_fraction a random voxel of a random
foreground class present in the volume, nnU-Net's oversampling that keeps
small tumours in view; otherwise a uniformly placed patch), cut a window
around it that is larger than data.crop by the context the enabled
augmentations consume (`augmentation_context`), augment the window with the
rank-generic transforms of `segjax.data.transforms` (scale, flips, rot90,
rotations, elastic deformation, brightness/contrast), and take the centre
data.crop. Parts of the window outside the volume are 0 in the image and
ignore_index in the label.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from segjax.data import transforms
from segjax.data.normalization import normalize


def augmentation_context(crop: Sequence[int], augment) -> tuple[int, ...]:
    """Voxels of context per side that the enabled augmentations read around a `crop` patch.

    A crop taken from the centre of a window rotated by up to theta in a
    plane reads a window (cos theta + sin theta) times larger along that
    plane's axes (at most sqrt(rank) for rotations in several planes); scaling
    by s reads 1 / s times as far; an elastic field of sigma moves voxels by
    about 3 sigma.
    """
    rank = len(crop)
    factor = np.ones(rank)
    if augment.rotate_degrees > 0:
        theta = math.radians(min(float(augment.rotate_degrees), 45.0))
        for plane in transforms.rotation_planes(rank, bool(augment.get("rotate_out_of_plane",
                                                                       False))):
            factor[list(plane)] *= math.cos(theta) + math.sin(theta)
        factor = np.minimum(factor, math.sqrt(rank))
    factor /= min(1.0, float(min(augment.scale)))
    elastic = 3.0 * float(augment.elastic_sigma)
    return tuple(int(math.ceil((f - 1) * c / 2 + elastic)) for f, c in zip(factor, crop))


def foreground_voxel(rng: np.random.Generator, label: np.ndarray,
                     ignore_index: int) -> tuple[int, ...] | None:
    """A random voxel of a random foreground class (> 0, not ignored) present in `label`."""
    classes = [int(c) for c in np.unique(label) if c > 0 and c != ignore_index]
    if not classes:
        return None
    chosen = classes[int(rng.integers(len(classes)))]
    positions = np.flatnonzero(label == chosen)
    return tuple(int(i) for i in np.unravel_index(positions[int(rng.integers(len(positions)))],
                                                  label.shape))


def _window(array: np.ndarray, starts: Sequence[int], size: Sequence[int], fill) -> np.ndarray:
    """array[starts : starts + size] over the leading axes, `fill` where it leaves the array."""
    out = np.full(tuple(size) + array.shape[len(size):], fill, array.dtype)
    source, target = [], []
    for start, length, extent in zip(starts, size, array.shape):
        lo, hi = max(start, 0), min(start + length, extent)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[tuple(target)] = array[tuple(source)]
    return out


def training_patch(rng: np.random.Generator, example: dict, data_config) -> dict:
    """One augmented, normalised training patch of data.crop from a volume example."""
    crop = tuple(int(c) for c in data_config.crop)
    shape = example["image"].shape[:-1]
    if len(crop) != len(shape):
        raise ValueError(f"data.crop={crop} has {len(crop)} axes; volume {example.get('name')} "
                         f"has {len(shape)} spatial axes {shape}")
    if data_config.weight_map.enabled:
        raise ValueError("data.weight_map (the U-Net paper's 2D border weights) is not "
                         "defined for volumes; disable it")
    ignore_index = int(data_config.ignore_index)
    augment = data_config.augment
    context = augmentation_context(crop, augment)
    window = [c + 2 * m for c, m in zip(crop, context)]
    if augment.rot90:  # a quarter turn swaps H and W: cut a square (H, W) window
        window[-2:] = [max(window[-2:])] * 2
    volume = data_config.get("volume") or {}
    fraction = float(volume.get("foreground_fraction", 0.0))
    centre = None
    if rng.random() < fraction:
        centre = foreground_voxel(rng, example["label"], ignore_index)
    if centre is None:
        starts = [int(rng.integers(max(n - c, 0) + 1)) for n, c in zip(shape, crop)]
        centre = tuple(s + c // 2 for s, c in zip(starts, crop))
    starts = [p - w // 2 for p, w in zip(centre, window)]
    image = normalize(example["image"], data_config)
    patch = {"image": _window(image, starts, window, 0.0),
             "label": _window(example["label"], starts, window, ignore_index)}
    patch = transforms.augment(rng, patch, augment, ignore_index=ignore_index, value_range=None)
    patch = transforms.center_crop(patch, crop)
    return {"image": np.ascontiguousarray(patch["image"], np.float32),
            "label": np.ascontiguousarray(patch["label"], np.int32)}
