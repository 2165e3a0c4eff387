"""Panoptic maps as images: instance colours over the class palette.

Stuff pixels take their class's palette colour; each thing instance takes
its class colour shifted by a per-instance offset (a fixed pseudo-random
draw per instance id, so an id keeps its colour across images and runs),
with a darker one-pixel outline where instances meet, so touching
instances of one class stay distinguishable; void pixels are black.
"""

from __future__ import annotations

import numpy as np

_SHIFT = 70          # the largest per-channel shift of an instance's colour


def instance_shifts(count: int) -> np.ndarray:
    """(count, 3) int colour offsets, row i for instance id i (row 0: no shift)."""
    shifts = np.random.default_rng(12345).integers(-_SHIFT, _SHIFT + 1, (max(count, 1), 3))
    shifts[0] = 0
    return shifts


def boundaries(instance: np.ndarray) -> np.ndarray:
    """(H, W) True on instance pixels whose right or lower neighbour has another id."""
    edge = np.zeros(instance.shape, bool)
    edge[:, :-1] |= instance[:, :-1] != instance[:, 1:]
    edge[:-1, :] |= instance[:-1, :] != instance[1:, :]
    return edge & (instance > 0)


def panoptic_colours(panoptic_class: np.ndarray, panoptic_instance: np.ndarray,
                     palette: np.ndarray, *, void_label: int = 255) -> np.ndarray:
    """uint8 (H, W, 3) colours of a panoptic map (class and instance ids per pixel)."""
    classes = np.asarray(panoptic_class)
    instance = np.asarray(panoptic_instance)
    palette = np.asarray(palette, np.int64)
    void = (classes == void_label) | (classes < 0) | (classes >= len(palette))
    colours = palette[np.where(void, 0, classes)]
    shifts = instance_shifts(int(instance.max(initial=0)) + 1)
    colours = colours + shifts[np.maximum(instance, 0)]
    colours[boundaries(instance)] //= 2
    colours[void] = 0
    return np.clip(colours, 0, 255).astype(np.uint8)
