"""The U-Net paper's pixel-wise loss weight map (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 and d2 are the distances (pixel centre to pixel centre, Euclidean) from x
to the nearest and the second-nearest cell; w_c balances class frequencies.
The border term makes the network learn the thin background (membrane) lines
that separate touching cells.

Decisions the paper leaves open, made here:
- cells are the connected components (4-connectivity) of each class other
  than `background` (ISBI: class 1, cell interior; class 0, membrane, is the
  background that separates them);
- the border term is added on background pixels only (inside a cell d1 = 0
  and the term would just thicken cell edges; the paper's Fig. 3d shows
  weights on the separating borders);
- w_c(x) = n_valid / (K * n_class(x)) over the K classes present in the
  label, so that w_c averages to 1 over the labelled pixels; `balance=False`
  uses w_c = 1;
- pixels labelled `ignore_index` get weight 0.

Speed: the distance to each cell is computed in a window around the cell
only, `radius` pixels wider than its bounding box. Beyond it the border term
is below `tolerance` (a cell farther than r contributes d2 > r, so the term is
at most w0 exp(-r^2 / 2 sigma^2)), so the result equals the full computation
to within `tolerance`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def cell_instances(label: np.ndarray, *, background: int = 0,
                   ignore_index: int = 255) -> tuple[np.ndarray, int]:
    """(instance ids (H, W) int32, 0 = no cell; number of cells) from a class label map."""
    instances = np.zeros(label.shape, np.int32)
    count = 0
    for cls in np.unique(label):
        if cls in (background, ignore_index):
            continue
        components, found = ndimage.label(label == cls)
        instances[components > 0] = components[components > 0] + count
        count += found
    return instances, count


def class_balance_weights(label: np.ndarray, *, ignore_index: int = 255) -> np.ndarray:
    """w_c(x): inverse class frequency, normalised to mean 1 over the labelled pixels."""
    valid = label != ignore_index
    weights = np.zeros(label.shape, np.float32)
    classes, counts = np.unique(label[valid], return_counts=True)
    if classes.size == 0:
        return weights
    per_class = counts.sum() / (classes.size * counts.astype(np.float64))
    for cls, weight in zip(classes, per_class):
        weights[label == cls] = weight
    return weights


def nearest_two_distances(instances: np.ndarray, count: int,
                          radius: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2): distances to the nearest and second-nearest instance; inf beyond `radius`."""
    d1 = np.full(instances.shape, np.inf, np.float64)
    d2 = np.full(instances.shape, np.inf, np.float64)
    pad = int(math.ceil(radius)) if math.isfinite(radius) else max(instances.shape)
    for cell_id, box in enumerate(ndimage.find_objects(instances, max_label=count), start=1):
        if box is None:
            continue
        window = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n))
                       for s, n in zip(box, instances.shape))
        distance = ndimage.distance_transform_edt(instances[window] != cell_id)
        near, second = d1[window], d2[window]
        d2[window] = np.minimum(second, np.maximum(near, distance))
        d1[window] = np.minimum(near, distance)
    return d1, d2


def unet_weight_map(label: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0,
                    balance: bool = True, background: int = 0, ignore_index: int = 255,
                    tolerance: float = 1e-6) -> np.ndarray:
    """float32 (H, W) weight map of a class-index label (H, W); see the module docstring."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"unet_weight_map: label must be (H, W), got shape {label.shape}")
    if sigma <= 0:
        raise ValueError(f"data.weight_map.sigma must be > 0, got {sigma}")
    valid = label != ignore_index
    weights = (class_balance_weights(label, ignore_index=ignore_index) if balance
               else valid.astype(np.float32))
    if w0 <= 0:
        return weights
    instances, count = cell_instances(label, background=background, ignore_index=ignore_index)
    radius = sigma * math.sqrt(2.0 * math.log(max(w0 / tolerance, 1.0 + 1e-12)))
    d1, d2 = nearest_two_distances(instances, count, radius)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))
    border = np.where((instances == 0) & valid, border, 0.0)
    return (weights + border).astype(np.float32)


def weight_map_from_config(label: np.ndarray, weight_config, *, ignore_index: int) -> np.ndarray:
    """`unet_weight_map` with data.weight_map's w0, sigma and balance."""
    return unet_weight_map(label, w0=float(weight_config.w0), sigma=float(weight_config.sigma),
                           balance=bool(weight_config.balance), ignore_index=ignore_index)
