"""Segmentation metrics from a confusion matrix: IoU, accuracy, Dice, frequency-weighted IoU.

The confusion matrix is the one thing computed on device: `confusion_matrix`
is jit-able, sums over the whole batch (a sharded batch gives the global
matrix) and is exact in int32, so evaluation only moves a (K, K) array to the
host, where `metrics_from_confusion` turns the summed matrix into numbers.

Conventions: row = true class, column = predicted class. Pixels whose label
is `ignore_index` or outside [0, K) are not counted (`validate_labels` is the
host-side check that catches the latter as a data error). A class absent from
both labels and predictions has no IoU, accuracy or Dice: its per-class entry
is NaN and it is left out of the means (as in mmseg and the Cityscapes
scripts), so a small validation set is not penalised for classes it lacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(predictions_or_logits: jax.Array, labels: jax.Array, *, num_classes: int,
                     ignore_index: int | None = 255) -> jax.Array:
    """int32 (K, K) counts of (true, predicted) pairs over all valid pixels.

    Takes logits (N, *spatial, K), argmaxed over the last axis, or integer
    predictions (N, *spatial). Predictions outside [0, K) are not counted.
    """
    predictions = predictions_or_logits
    if predictions.ndim == labels.ndim + 1:
        if predictions.shape[-1] != num_classes:
            raise ValueError(f"confusion_matrix: logits {predictions.shape} have "
                             f"{predictions.shape[-1]} classes, num_classes={num_classes}")
        predictions = jnp.argmax(predictions, axis=-1)
    elif not jnp.issubdtype(predictions.dtype, jnp.integer):
        raise TypeError(f"confusion_matrix: predictions of dtype {predictions.dtype} and shape "
                        f"{predictions.shape} are neither logits (labels' shape + K) nor "
                        "integer class indices")
    if predictions.shape != labels.shape:
        raise ValueError(f"confusion_matrix: predictions {predictions.shape} do not match "
                         f"labels {labels.shape}")
    labels = labels.astype(jnp.int32)
    predictions = predictions.astype(jnp.int32)
    valid = (labels >= 0) & (labels < num_classes)
    valid &= (predictions >= 0) & (predictions < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    index = jnp.where(valid, labels * num_classes + predictions, 0).reshape(-1)
    counts = jnp.zeros((num_classes * num_classes,), jnp.int32)
    counts = counts.at[index].add(valid.reshape(-1).astype(jnp.int32))
    return counts.reshape(num_classes, num_classes)


def validate_labels(labels, num_classes: int, ignore_index: int | None = 255, *,
                    where: str = "labels") -> None:
    """Raises ValueError naming the label values outside [0, K) that are not ignore_index."""
    values = np.unique(np.asarray(labels))
    bad = values[(values < 0) | (values >= num_classes)]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
        raise ValueError(f"{where}: label values [{shown}] are outside [0, {num_classes}) and "
                         f"are not ignore_index={ignore_index}; map raw values to classes with "
                         "config.data.label_values / config.data.ignore_values")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1),
                        np.nan)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def metrics_from_confusion(cm, class_names: Sequence[str] | None = None) -> dict:
    """Per-class and mean IoU, accuracy and Dice, pixel accuracy and fw-IoU of a (K, K) matrix.

    With `class_names`, the result also holds 'class_names' and one scalar
    'iou/<name>' per class, ready for a metric writer.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"metrics_from_confusion: expected a square (K, K) matrix, got {cm.shape}")
    num_classes = cm.shape[0]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"metrics_from_confusion: {len(class_names)} class_names for a "
                         f"{num_classes}-class confusion matrix")
    true_positive = np.diag(cm)
    label_count = cm.sum(axis=1)
    predicted_count = cm.sum(axis=0)
    total = cm.sum()

    iou = _ratio(true_positive, label_count + predicted_count - true_positive)
    accuracy = _ratio(true_positive, label_count)
    dice = _ratio(2 * true_positive, label_count + predicted_count)
    present = label_count > 0
    frequency = _ratio(label_count, np.full_like(label_count, total))
    metrics = {
        "miou": _nanmean(iou),
        "per_class_iou": iou.tolist(),
        "pixel_accuracy": float(_ratio(true_positive.sum(), total)),
        "mean_accuracy": _nanmean(accuracy),
        "per_class_accuracy": accuracy.tolist(),
        "dice": _nanmean(dice),
        "per_class_dice": dice.tolist(),
        "fw_iou": float(np.sum(frequency[present] * iou[present])) if total else float("nan"),
    }
    if class_names is not None:
        metrics["class_names"] = list(class_names)
        for name, value in zip(class_names, iou):
            metrics[f"iou/{name}"] = float(value)
    return metrics


def scalar_metrics(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """The scalar entries of a metrics dict (lists and names dropped), keys prefixed."""
    return {prefix + key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float, np.floating, np.integer))}


def _cell(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.2f}"


def format_metrics_table(metrics: Mapping, class_names: Sequence[str] | None = None) -> str:
    """A Markdown table of per-class IoU, accuracy and Dice (percent) with a 'mean' row.

    Classes absent from labels and predictions show 'n/a'.
    """
    iou = metrics["per_class_iou"]
    names = list(class_names) if class_names else [f"class {i}" for i in range(len(iou))]
    if len(names) != len(iou):
        raise ValueError(f"format_metrics_table: {len(names)} class_names for {len(iou)} classes")
    rows = ["| class | IoU | accuracy | Dice |", "| --- | ---: | ---: | ---: |"]
    for name, *values in zip(names, iou, metrics["per_class_accuracy"],
                             metrics["per_class_dice"]):
        rows.append(f"| {name} | " + " | ".join(_cell(v) for v in values) + " |")
    means = (metrics["miou"], metrics["mean_accuracy"], metrics["dice"])
    rows.append("| **mean** | " + " | ".join(_cell(v) for v in means) + " |")
    rows.append(f"\npixel accuracy {_cell(metrics['pixel_accuracy'])}, "
                f"frequency-weighted IoU {_cell(metrics['fw_iou'])}")
    return "\n".join(rows)
