"""Image normalisation (config.data.normalization), the one used by training and inference.

- 'fixed': (x / 255 - data.mean) / data.std per channel, for uint8 images.
- 'zscore': per image (volume) and channel, (x - mean) / std over its
  foreground: No New-Net's brain, the voxels where any modality is non-zero
  (data.volume.zscore_over='nonzero'; voxels outside become 0), or every
  voxel ('all', for data without a zero background such as EM).

`normalizer(image, data_config)` returns the function that normalises parts
of `image` exactly as `normalize` normalises the whole, so a sliding window
can read normalised tiles without normalising the whole image at once: for
'zscore' the statistics come from the whole image, never from the tile.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

NORMALIZATIONS = ("fixed", "zscore")
ZSCORE_OVER = ("nonzero", "all")


def fixed(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(image / 255 - mean) / std per channel, float32 (mean/std of length 1 or C)."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    channels = image.shape[-1]
    for name, value in (("data.mean", mean), ("data.std", std)):
        if value.ndim != 1 or value.size not in (1, channels):
            raise ValueError(f"{name} has {value.size} values; expected 1 or {channels} "
                             "(one per image channel)")
    return ((image.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def zscore_statistics(image: np.ndarray, over: str = "nonzero"):
    """(mean, std, masked) of `image` (*spatial, C): per-channel statistics over the
    foreground, and whether voxels outside it are set to 0 (see `zscore`)."""
    if over not in ZSCORE_OVER:
        raise ValueError(f"data.volume.zscore_over must be one of {ZSCORE_OVER}, got {over!r}")
    image = np.asarray(image, np.float32)
    mask = np.any(image != 0, axis=-1) if over == "nonzero" else None
    if mask is not None and not mask.any():
        mask = None
    values = image.reshape(-1, image.shape[-1]) if mask is None else image[mask]
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    return mean, np.where(std > 1e-8, std, 1.0), mask is not None


def _apply_zscore(image: np.ndarray, mean, std, masked: bool) -> np.ndarray:
    image = np.asarray(image, np.float32)
    normalized = ((image - mean) / std).astype(np.float32)
    if masked:
        normalized[~np.any(image != 0, axis=-1)] = 0.0
    return normalized


def zscore(image: np.ndarray, over: str = "nonzero") -> np.ndarray:
    """Per-channel (x - mean) / std over the foreground of `image` (*spatial, C), float32.

    `over='nonzero'`: the foreground is where any channel is non-zero (the
    brain of a skull-stripped MRI); voxels outside it become 0. `over='all'`:
    every voxel. An empty foreground falls back to all voxels; a constant
    channel is only centred.
    """
    return _apply_zscore(image, *zscore_statistics(image, over))


def normalizer(image: np.ndarray, data_config) -> Callable[[np.ndarray], np.ndarray]:
    """The function normalising any part of `image` as `normalize(image, data_config)` would."""
    method = data_config.get("normalization", "fixed")
    if method == "fixed":
        return lambda part: fixed(part, data_config.mean, data_config.std)
    if method == "zscore":
        volume = data_config.get("volume") or {}
        statistics = zscore_statistics(image, over=volume.get("zscore_over", "nonzero"))
        return lambda part: _apply_zscore(part, *statistics)
    raise ValueError(f"data.normalization must be one of {NORMALIZATIONS}, got {method!r}")


def normalize(image: np.ndarray, data_config) -> np.ndarray:
    """float32 image per data.normalization (module docstring)."""
    return normalizer(image, data_config)(image)
