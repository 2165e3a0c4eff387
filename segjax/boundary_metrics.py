"""Boundary and surface metrics of per-image predictions: Boundary IoU, boundary F-score,
HD95 and normalised surface Dice.

The confusion-matrix metrics (`segjax.metrics`) need only pixel counts; these
need each image's prediction, so they are computed on the host per image and
class, and are opt-in (`config.eval.metrics`, names in `BOUNDARY_METRICS`):
a pass of scipy morphology and distance transforms per image and class costs
more than the prediction of a small model.

For class k of an image, P and G are the predicted and labelled masks,
both restricted to the valid pixels: an ignored pixel (label ignore_index or
out of range; a channel-stack element that is not 0 or 1) is in neither, so
whatever is predicted there changes no metric, as in the confusion matrix.
Channel stacks (multi-label) give one binary pair per channel.

- Boundary IoU (Cheng et al. 2021, boundary-iou-api `mask_to_boundary`):
  the boundary of a mask is the mask minus its erosion by d iterations of a
  3x3 (3x3x3) square, the image border counting as outside, with
  d = max(1, round(dilation_ratio x image diagonal)) (0.02 in the paper).
  Per class, |B(P) & B(G)| and |B(P) | B(G)| are summed over the images,
  IoU = sum of intersections / sum of unions (as mIoU accumulates pixels).
- Boundary F-score (Csurka et al. 2013, the BF score): one-pixel boundaries
  (d = 1 above); precision = the fraction of predicted boundary pixels
  within `f_tolerance` x image diagonal (Euclidean, 0.75% by default as
  MATLAB's `bfscore`) of a label boundary pixel, recall the converse,
  F = 2PR / (P + R). Per class, the mean over images whose label or
  prediction has the class (an image with the class on one side only scores
  0); images with neither are skipped.
- HD95 and normalised surface Dice (NSD, Nikolov et al. 2021), as MONAI's
  `compute_hausdorff_distance(percentile=95)` and `compute_surface_dice`:
  surfaces are mask XOR its erosion by the cross-shaped structure, distances
  Euclidean in units of the voxel spacing (the example's 'spacing', else 1
  per axis). HD95 = max of the two directed 95th percentiles (linear
  interpolation); NSD = (surface points of P within `nsd_tolerance` of G's
  surface + those of G within it of P's) / (all surface points of both).
  Either mask empty: HD95 NaN (undefined; MONAI's value, so the image is
  skipped, and the miss shows in NSD instead); both empty: NSD NaN, one
  empty: NSD 0. Per class, the mean over images with NaN skipped (MONAI's
  reduction).

Class means skip classes without a value (NaN), as the confusion metrics do.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

from segjax.config import BOUNDARY_METRICS, BoundaryOptions

# ----------------------------------------------------------------------------- one mask pair


def diagonal(shape: Sequence[int]) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(shape, np.float64)))))


def boundary_width(shape: Sequence[int], ratio: float) -> int:
    """Boundary IoU's d: max(1, round(ratio x diagonal))."""
    return max(1, int(round(ratio * diagonal(shape))))


def mask_boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The mask's pixels within `width` square-erosion steps of its outside (the image
    border counts as outside)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    structure = np.ones((3,) * mask.ndim, bool)
    return mask & ~ndimage.binary_erosion(mask, structure, iterations=width, border_value=0)


def boundary_iou_counts(prediction: np.ndarray, label: np.ndarray,
                        dilation_ratio: float = 0.02) -> tuple[int, int]:
    """(|B(P) & B(G)|, |B(P) | B(G)|) of two binary masks (the module docstring's B)."""
    width = boundary_width(np.shape(label), dilation_ratio)
    predicted, actual = mask_boundary(prediction, width), mask_boundary(label, width)
    return int(np.sum(predicted & actual)), int(np.sum(predicted | actual))


def _within(points: np.ndarray, targets: np.ndarray, tolerance: float,
            spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distance from each True pixel of `points` to the nearest True pixel of `targets`."""
    distance = ndimage.distance_transform_edt(~targets, sampling=spacing)
    return distance[points] <= tolerance


def boundary_f_score(prediction: np.ndarray, label: np.ndarray,
                     tolerance_ratio: float = 0.0075) -> float:
    """The BF score of two binary masks (NaN when neither has a boundary)."""
    predicted, actual = mask_boundary(prediction), mask_boundary(label)
    if not predicted.any() and not actual.any():
        return float("nan")
    if not predicted.any() or not actual.any():
        return 0.0
    tolerance = tolerance_ratio * diagonal(np.shape(label))
    precision = float(np.mean(_within(predicted, actual, tolerance)))
    recall = float(np.mean(_within(actual, predicted, tolerance)))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def surface(mask: np.ndarray) -> np.ndarray:
    """MONAI's surface voxels: the mask XOR its erosion by the cross-shaped structure."""
    mask = np.asarray(mask, bool)
    return mask ^ ndimage.binary_erosion(mask) if mask.any() else mask


def surface_distances(prediction: np.ndarray, label: np.ndarray,
                      spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances of P's surface points to G's surface, of G's to P's), in spacing units;
    inf for every point when the other surface is empty."""
    predicted, actual = surface(prediction), surface(label)

    def directed(points, targets):
        if not targets.any():
            return np.full(int(points.sum()), np.inf)
        return ndimage.distance_transform_edt(~targets, sampling=spacing)[points]

    return directed(predicted, actual), directed(actual, predicted)


def hausdorff95(prediction: np.ndarray, label: np.ndarray,
                spacing: Sequence[float] | None = None) -> float:
    """The symmetric 95th-percentile Hausdorff distance; NaN when either mask is empty."""
    forward, backward = surface_distances(prediction, label, spacing)
    if not forward.size or not backward.size:
        return float("nan")
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def normalized_surface_dice(prediction: np.ndarray, label: np.ndarray, tolerance: float,
                            spacing: Sequence[float] | None = None) -> float:
    """NSD at `tolerance` (spacing units): NaN when both surfaces are empty."""
    forward, backward = surface_distances(prediction, label, spacing)
    total = forward.size + backward.size
    if total == 0:
        return float("nan")
    return float((np.sum(forward <= tolerance) + np.sum(backward <= tolerance)) / total)


# ----------------------------------------------------------------------------- a dataset


def class_masks(prediction: np.ndarray, label: np.ndarray, num_classes: int,
                ignore_index: int | None, *, multilabel: bool = False
                ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(k, P_k, G_k) per class, restricted to valid pixels (see the module docstring).

    Class indices: prediction and label (*spatial). Channel stacks
    (`multilabel`): prediction (*spatial, K) booleans, label (*spatial, K) 0/1.
    """
    prediction, label = np.asarray(prediction), np.asarray(label)
    if multilabel:
        for k in range(num_classes):
            valid = (label[..., k] == 0) | (label[..., k] == 1)
            if ignore_index is not None:
                valid &= label[..., k] != ignore_index
            yield k, (prediction[..., k] > 0) & valid, label[..., k] == 1
        return
    valid = (label >= 0) & (label < num_classes)
    if ignore_index is not None:
        valid &= label != ignore_index
    for k in range(num_classes):
        yield k, (prediction == k) & valid, (label == k) & valid


class BoundaryMetrics:
    """Accumulates the metrics of `options.metrics` over images, per class.

    `update(prediction, label, spacing=None)` once per image (class indices,
    or channel stacks with `multilabel=True`); `result()` gives
    'boundary_iou', 'boundary_f', 'hd95', 'nsd' (class means) and their
    'per_class_*' lists, for the metrics asked for.
    """

    def __init__(self, options: BoundaryOptions, num_classes: int, *,
                 ignore_index: int | None = 255, multilabel: bool = False):
        self.options, self.num_classes = options, int(num_classes)
        self.ignore_index, self.multilabel = ignore_index, multilabel
        self.intersection = np.zeros(self.num_classes, np.int64)
        self.union = np.zeros(self.num_classes, np.int64)
        self.per_image: dict[str, list[list[float]]] = {
            name: [[] for _ in range(self.num_classes)]
            for name in ("boundary_f", "hd95", "nsd") if name in options.metrics}

    def __bool__(self) -> bool:
        return bool(self.options.metrics)

    def update(self, prediction: np.ndarray, label: np.ndarray,
               spacing: Sequence[float] | None = None) -> None:
        metrics = self.options.metrics
        spacing = tuple(float(s) for s in spacing) if spacing is not None else None
        for k, predicted, actual in class_masks(prediction, label, self.num_classes,
                                                self.ignore_index, multilabel=self.multilabel):
            if "boundary_iou" in metrics:
                intersection, union = boundary_iou_counts(predicted, actual,
                                                          self.options.dilation_ratio)
                self.intersection[k] += intersection
                self.union[k] += union
            if "boundary_f" in metrics:
                self.per_image["boundary_f"][k].append(
                    boundary_f_score(predicted, actual, self.options.f_tolerance))
            if "hd95" in metrics:
                self.per_image["hd95"][k].append(hausdorff95(predicted, actual, spacing))
            if "nsd" in metrics:
                self.per_image["nsd"][k].append(normalized_surface_dice(
                    predicted, actual, self.options.nsd_tolerance, spacing))

    def result(self) -> dict:
        result = {}
        if "boundary_iou" in self.options.metrics:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_class = np.where(self.union > 0, self.intersection / np.maximum(self.union, 1),
                                     np.nan)
            result.update(_summary("boundary_iou", per_class))
        for name, values in self.per_image.items():
            per_class = np.array([_mean_skipping_nan(v) for v in values])
            result.update(_summary(name, per_class))
        return result


def _mean_skipping_nan(values: Sequence[float]) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _summary(name: str, per_class: np.ndarray) -> dict:
    return {name: _mean_skipping_nan(per_class), f"per_class_{name}": per_class.tolist()}
