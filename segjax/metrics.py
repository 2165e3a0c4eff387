"""Segmentation metrics from a confusion matrix: IoU, accuracy, Dice, precision, recall, F1,
frequency-weighted IoU.

Two ways to count the confusion matrix, with the same numbers:
`confusion_matrix` is jit-able for code that has its predictions and labels on
the device (it sums over the whole batch, so a sharded batch gives the global
matrix, exact in int32); `host_confusion_matrix` counts NumPy maps with
`np.bincount`, which is what the evaluator uses, since its predictions come
back to the host from the sliding window and test-time augmentation and its
labels never leave it. `metrics_from_confusion` turns the summed matrix into
numbers.

Conventions: row = true class, column = predicted class. Pixels whose label
is `ignore_index` or outside [0, K) are not counted (`validate_labels` is the
host-side check that catches the latter as a data error). A class absent from
both labels and predictions has no IoU, accuracy or Dice: its per-class entry
is NaN and it is left out of the means (as in mmseg and the Cityscapes
scripts), so a small validation set is not penalised for classes it lacks.
Per class: IoU = TP / (TP + FP + FN), accuracy = recall = TP / (TP + FN)
(the class's row), precision = TP / (TP + FP) (its column), Dice = F1 =
2 TP / (2 TP + FP + FN); frequency-weighted IoU = sum over classes present in
the labels of (their pixel share) x IoU (Long et al. 2015, FCN's `fwavacc`).

Channel-stack (multi-label, binary) predictions have one binary problem per
channel: `multilabel_confusion` counts a (K, 2, 2) array, and
`metrics_from_multilabel_confusion` gives the same keys, each class's metrics
being those of its positive side, pixel accuracy over all valid elements.

Boundary and surface metrics need per-image predictions: `segjax.boundary_metrics`.
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


def host_confusion_matrix(predictions: np.ndarray, labels: np.ndarray, *, num_classes: int,
                          ignore_index: int | None = 255) -> np.ndarray:
    """`confusion_matrix` of integer class maps of any equal shape, counted on the host (int64)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if not np.issubdtype(predictions.dtype, np.integer):
        raise TypeError(f"host_confusion_matrix: predictions of dtype {predictions.dtype} are "
                        "not integer class indices")
    if predictions.shape != labels.shape:
        raise ValueError(f"host_confusion_matrix: predictions {predictions.shape} do not match "
                         f"labels {labels.shape}")
    labels = labels.astype(np.int64).ravel()
    predictions = predictions.astype(np.int64).ravel()
    valid = (labels >= 0) & (labels < num_classes)
    valid &= (predictions >= 0) & (predictions < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    counts = np.bincount(labels[valid] * num_classes + predictions[valid],
                         minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def multilabel_confusion(predictions: jax.Array, labels: jax.Array, *,
                         ignore_index: int | None = 255) -> jax.Array:
    """int32 (K, 2, 2) counts per channel of (true, predicted) in {0, 1} over valid elements.

    `predictions` (N, *spatial, K): booleans / 0-1 integers; `labels` the same
    shape with 0, 1 and ignored elements (ignore_index, or any other value).
    """
    if predictions.shape != labels.shape:
        raise ValueError(f"multilabel_confusion: predictions {predictions.shape} do not match "
                         f"labels {labels.shape} (N, *spatial, K)")
    labels = labels.astype(jnp.int32)
    valid = (labels == 0) | (labels == 1)
    if ignore_index is not None:
        valid &= labels != ignore_index
    index = jnp.where(valid, 2 * labels + (predictions > 0).astype(jnp.int32), 0)
    channels = labels.shape[-1]
    flat_index = (index + 4 * jnp.arange(channels)).reshape(-1)
    counts = jnp.zeros((4 * channels,), jnp.int32).at[flat_index].add(
        valid.reshape(-1).astype(jnp.int32))
    return counts.reshape(channels, 2, 2)


def host_multilabel_confusion(predictions: np.ndarray, labels: np.ndarray, *,
                              ignore_index: int | None = 255) -> np.ndarray:
    """`multilabel_confusion` of (*spatial, K) NumPy stacks, counted on the host (int64)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"host_multilabel_confusion: predictions {predictions.shape} do not "
                         f"match labels {labels.shape} (*spatial, K)")
    channels = labels.shape[-1]
    labels = labels.reshape(-1, channels).astype(np.int64)
    predicted = (predictions.reshape(-1, channels) > 0).astype(np.int64)
    valid = (labels == 0) | (labels == 1)
    if ignore_index is not None:
        valid &= labels != ignore_index
    index = 2 * labels + predicted + 4 * np.arange(channels)
    counts = np.bincount(index[valid], minlength=4 * channels)
    return counts.reshape(channels, 2, 2)


def validate_labels(labels, num_classes: int, ignore_index: int | None = 255, *,
                    where: str = "labels", multilabel: bool = False) -> None:
    """Raises ValueError naming the label values outside [0, K) that are not ignore_index
    (`multilabel`: values other than 0, 1 and ignore_index, or a last axis that is not K)."""
    labels = np.asarray(labels)
    if multilabel:
        if labels.ndim < 2 or labels.shape[-1] != num_classes:
            raise ValueError(f"{where}: channel-stack labels of shape {labels.shape} need a last "
                             f"axis of {num_classes} channels (model.num_classes)")
        num_classes = 2
    values = np.unique(labels)
    bad = values[(values < 0) | (values >= num_classes)]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
        raise ValueError(f"{where}: label values [{shown}] are outside [0, {num_classes}) and "
                         f"are not ignore_index={ignore_index}; map raw values to classes with "
                         "config.data.label_values / config.data.ignore_values"
                         + (" (channel masks hold 0 or 1)" if multilabel else ""))


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

    return _class_metrics(true_positive, label_count, predicted_count,
                          correct=true_positive.sum(), total=total, class_names=class_names)


def _class_metrics(true_positive, label_count, predicted_count, *, correct, total,
                   class_names) -> dict:
    """The metrics dict from per-class TP, label counts (TP + FN), predicted counts (TP + FP)."""
    iou = _ratio(true_positive, label_count + predicted_count - true_positive)
    recall = _ratio(true_positive, label_count)
    precision = _ratio(true_positive, predicted_count)
    dice = _ratio(2 * true_positive, label_count + predicted_count)
    present = label_count > 0
    label_total = label_count.sum()
    frequency = _ratio(label_count, np.full_like(label_count, label_total))
    metrics = {
        "miou": _nanmean(iou),
        "per_class_iou": iou.tolist(),
        "pixel_accuracy": float(_ratio(np.asarray(correct), np.asarray(total))),
        "mean_accuracy": _nanmean(recall),
        "per_class_accuracy": recall.tolist(),
        "dice": _nanmean(dice),
        "per_class_dice": dice.tolist(),
        "mean_precision": _nanmean(precision),
        "per_class_precision": precision.tolist(),
        "mean_recall": _nanmean(recall),
        "per_class_recall": recall.tolist(),
        "mean_f1": _nanmean(dice),
        "per_class_f1": dice.tolist(),
        "fw_iou": (float(np.sum(frequency[present] * iou[present])) if label_total
                   else float("nan")),
    }
    if class_names is not None:
        metrics["class_names"] = list(class_names)
        for name, value in zip(class_names, iou):
            metrics[f"iou/{name}"] = float(value)
    return metrics


def metrics_from_multilabel_confusion(cm, class_names: Sequence[str] | None = None) -> dict:
    """`metrics_from_confusion`'s keys for a (K, 2, 2) `multilabel_confusion`: each class's
    metrics are those of its positive side; pixel accuracy counts every valid element;
    fw-IoU weighs classes by their positive label counts."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 3 or cm.shape[1:] != (2, 2):
        raise ValueError(f"metrics_from_multilabel_confusion: expected (K, 2, 2), got {cm.shape}")
    if class_names is not None and len(class_names) != cm.shape[0]:
        raise ValueError(f"metrics_from_multilabel_confusion: {len(class_names)} class_names "
                         f"for {cm.shape[0]} channels")
    true_positive = cm[:, 1, 1]
    return _class_metrics(true_positive, cm[:, 1].sum(axis=1), cm[:, :, 1].sum(axis=1),
                          correct=cm[:, 0, 0].sum() + true_positive.sum(), total=cm.sum(),
                          class_names=class_names)


def scalar_metrics(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """The scalar entries of a metrics dict (lists and names dropped), keys prefixed."""
    return {prefix + key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float, np.floating, np.integer))}


def _cell(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.2f}"


# Columns of the per-class table: (metric key, header, percent?) when the result has them.
# Accuracy is the class's recall and Dice its F1, so neither repeats.
TABLE_COLUMNS = (("iou", "IoU", True), ("accuracy", "accuracy", True), ("dice", "Dice", True),
                 ("precision", "precision", True),
                 ("boundary_iou", "boundary IoU", True), ("boundary_f", "BF", True),
                 ("hd95", "HD95", False), ("nsd", "NSD", True))
MEAN_KEYS = {"iou": "miou", "accuracy": "mean_accuracy", "dice": "dice",
             "precision": "mean_precision"}


def _value_cell(value: float, percent: bool) -> str:
    return _cell(value) if percent else ("n/a" if np.isnan(value) else f"{value:.2f}")


def format_metrics_table(metrics: Mapping, class_names: Sequence[str] | None = None) -> str:
    """A Markdown table of the per-class metrics the result holds (IoU, accuracy = recall,
    Dice = F1, precision, and boundary IoU, BF, HD95, NSD when computed; percent except
    HD95, in spacing units) with a 'mean' row. Classes without a value show 'n/a'."""
    iou = metrics["per_class_iou"]
    names = list(class_names) if class_names else [f"class {i}" for i in range(len(iou))]
    if len(names) != len(iou):
        raise ValueError(f"format_metrics_table: {len(names)} class_names for {len(iou)} classes")
    columns = [(key, header, percent) for key, header, percent in TABLE_COLUMNS
               if f"per_class_{key}" in metrics]
    rows = ["| class | " + " | ".join(header for _, header, _ in columns) + " |",
            "| --- |" + " ---: |" * len(columns)]
    for index, name in enumerate(names):
        cells = [_value_cell(float(metrics[f"per_class_{key}"][index]), percent)
                 for key, _, percent in columns]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [_value_cell(float(metrics[MEAN_KEYS.get(key, key)]), percent)
             for key, _, percent in columns]
    rows.append("| **mean** | " + " | ".join(means) + " |")
    rows.append(f"\npixel accuracy {_cell(metrics['pixel_accuracy'])}, "
                f"frequency-weighted IoU {_cell(metrics['fw_iou'])}")
    return "\n".join(rows)
