"""Confusion-matrix metrics against references: MONAI's confusion-matrix metrics (precision,
recall, F1, IoU per class; the dev extra's test-only MONAI) and FCN's `score.py` (IoU,
accuracies, frequency-weighted IoU), for class indices and for channel stacks, with
ignored pixels."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from segjax import metrics

torch = pytest.importorskip("torch")
monai_cm = pytest.importorskip("monai.metrics.confusion_matrix")

IGNORE = 255
K = 4


def fast_hist(a, b, n):
    """fcn.berkeleyvision.org score.py `fast_hist` (Long, Shelhamer, Darrell; BSD-2 as
    Caffe, per the repository's README), copied."""
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n**2).reshape(n, n)


def fcn_scores(hist):
    """The scores of score.py `do_seg_tests`, copied (prints turned into a dict)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist).sum() / hist.sum()
        per_class_acc = np.diag(hist) / hist.sum(1)
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        return {"overall accuracy": acc, "mean accuracy": np.nanmean(per_class_acc),
                "mean IU": np.nanmean(iu), "fwavacc": (freq[freq > 0] * iu[freq > 0]).sum(),
                "iu": iu}


def index_case(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, (3, 20, 24)).astype(np.int32)
    predictions = np.where(rng.random(labels.shape) < 0.6, labels,
                           rng.integers(0, K, labels.shape)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.15] = IGNORE
    return predictions, labels


def monai_metric(name, predictions_onehot, labels_onehot):
    """MONAI's metric per class from its confusion matrix summed over the batch."""
    cm = monai_cm.get_confusion_matrix(torch.tensor(predictions_onehot),
                                       torch.tensor(labels_onehot), include_background=True)
    return monai_cm.compute_confusion_matrix_metric(name, cm.sum(0)).numpy()


def onehot_valid(values, valid, classes=K):
    """(N, C, H, W) float one-hot, all zero at invalid pixels (they count for no class)."""
    onehot = np.eye(classes)[np.where(valid, values, 0)] * valid[..., None]
    return np.moveaxis(onehot, -1, 1).astype(np.float32)


def test_class_index_metrics_match_fcn_and_monai():
    predictions, labels = index_case()
    cm = np.asarray(metrics.confusion_matrix(jnp.asarray(predictions), jnp.asarray(labels),
                                             num_classes=K))
    ours = metrics.metrics_from_confusion(cm)
    valid = labels != IGNORE
    hist = fast_hist(labels[valid].ravel(), predictions[valid].ravel(), K)
    np.testing.assert_array_equal(cm, hist)
    fcn = fcn_scores(hist.astype(np.float64))
    assert ours["pixel_accuracy"] == pytest.approx(fcn["overall accuracy"], rel=1e-12)
    assert ours["mean_accuracy"] == pytest.approx(fcn["mean accuracy"], rel=1e-12)
    assert ours["miou"] == pytest.approx(fcn["mean IU"], rel=1e-12)
    assert ours["fw_iou"] == pytest.approx(fcn["fwavacc"], rel=1e-12)
    y_pred, y = onehot_valid(predictions, valid), onehot_valid(labels, valid)
    for key, name in (("per_class_precision", "precision"), ("per_class_recall", "sensitivity"),
                      ("per_class_f1", "f1 score"), ("per_class_iou", "threat score")):
        np.testing.assert_allclose(ours[key], monai_metric(name, y_pred, y), rtol=1e-6)
    assert ours["mean_f1"] == pytest.approx(ours["dice"])


def test_multilabel_metrics_match_monai_per_channel():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (2, 16, 18, 3)).astype(np.int32)
    predictions = np.where(rng.random(labels.shape) < 0.7, labels, 1 - labels).astype(bool)
    labels[rng.random(labels.shape) < 0.2] = IGNORE       # per element
    cm = np.asarray(metrics.multilabel_confusion(jnp.asarray(predictions), jnp.asarray(labels)))
    valid = labels != IGNORE
    assert cm.sum() == valid.sum()
    ours = metrics.metrics_from_multilabel_confusion(cm, ["a", "b", "c"])
    # MONAI on channel masks where an ignored element is neither predicted nor labelled:
    # a true negative, which none of these metrics counts.
    y_pred = np.moveaxis(predictions & valid, -1, 1).astype(np.float32)
    y = np.moveaxis((labels == 1) & valid, -1, 1).astype(np.float32)
    for key, name in (("per_class_precision", "precision"), ("per_class_recall", "sensitivity"),
                      ("per_class_f1", "f1 score"), ("per_class_iou", "threat score")):
        np.testing.assert_allclose(ours[key], monai_metric(name, y_pred, y), rtol=1e-6)
    correct = np.sum((predictions == (labels == 1)) & valid)
    assert ours["pixel_accuracy"] == pytest.approx(correct / valid.sum())
    positives = np.sum((labels == 1) & valid, axis=(0, 1, 2))
    assert ours["fw_iou"] == pytest.approx(np.sum(positives / positives.sum()
                                                  * np.array(ours["per_class_iou"])))
    assert ours["iou/b"] == ours["per_class_iou"][1]


def test_ignored_pixels_change_no_confusion_metric():
    """Scrambling the prediction at ignored pixels changes nothing; labelling them does."""
    predictions, labels = index_case(5)
    ignored = labels == IGNORE
    scrambled = np.where(ignored, (predictions + 1) % K, predictions)

    def result(p, y):
        return metrics.metrics_from_confusion(metrics.confusion_matrix(
            jnp.asarray(p), jnp.asarray(y), num_classes=K))

    base = result(predictions, labels)
    assert result(scrambled, labels) == base
    relabelled = result(predictions, np.where(ignored, (predictions + 1) % K, labels))
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "dice", "mean_precision",
                "mean_recall", "mean_f1", "fw_iou"):
        assert relabelled[key] != pytest.approx(base[key], rel=1e-9), key
    rng = np.random.default_rng(6)
    channel_labels = rng.integers(0, 2, (1, 10, 12, 2)).astype(np.int32)
    channel_labels[rng.random(channel_labels.shape) < 0.3] = IGNORE
    channel_predictions = rng.random(channel_labels.shape) < 0.5
    ignored = channel_labels == IGNORE

    def channel_result(p, y):
        return metrics.metrics_from_multilabel_confusion(metrics.multilabel_confusion(
            jnp.asarray(p), jnp.asarray(y)))

    base = channel_result(channel_predictions, channel_labels)
    assert channel_result(np.where(ignored, ~channel_predictions, channel_predictions),
                          channel_labels) == base
    relabelled = channel_result(channel_predictions,
                                np.where(ignored, 1 - channel_predictions, channel_labels))
    assert relabelled["miou"] != pytest.approx(base["miou"], rel=1e-9)
    assert relabelled["pixel_accuracy"] != pytest.approx(base["pixel_accuracy"], rel=1e-9)


def test_channel_label_validation():
    metrics.validate_labels(np.array([[[0, 1], [255, 1]]]), 2, 255, multilabel=True)
    with pytest.raises(ValueError, match="outside"):
        metrics.validate_labels(np.array([[[0, 2]]]), 2, 255, multilabel=True)
    with pytest.raises(ValueError, match="last axis of 3 channels"):
        metrics.validate_labels(np.zeros((1, 4, 4, 2)), 3, 255, multilabel=True)
