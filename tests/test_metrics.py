"""Confusion matrix and metrics against hand-computed fractions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import metrics

# 3 classes; 255 ignored, 7 is out of range (not counted); class 2 never a label.
LABELS = np.array([[0, 0, 0, 0, 1, 1, 1, 255, 7]], np.int32)
PREDICTIONS = np.array([[0, 0, 1, 2, 1, 1, 0, 2, 1]], np.int32)
# Pairs counted: (0,0) x2, (0,1), (0,2), (1,1) x2, (1,0).
EXPECTED_CM = np.array([[2, 1, 1],
                        [1, 2, 0],
                        [0, 0, 0]])


def test_confusion_matrix_from_predictions_and_logits():
    cm = metrics.confusion_matrix(jnp.asarray(PREDICTIONS), jnp.asarray(LABELS), num_classes=3)
    assert cm.dtype == jnp.int32
    np.testing.assert_array_equal(cm, EXPECTED_CM)
    logits = jax.nn.one_hot(PREDICTIONS, 3) * 4.0 - 1.0
    jitted = jax.jit(lambda x, y: metrics.confusion_matrix(x, y, num_classes=3))
    np.testing.assert_array_equal(jitted(logits, jnp.asarray(LABELS)), EXPECTED_CM)


def test_confusion_matrix_sums_over_the_batch():
    labels = np.stack([LABELS[0], LABELS[0][::-1]]).reshape(2, 3, 3)
    predictions = np.stack([PREDICTIONS[0], PREDICTIONS[0][::-1]]).reshape(2, 3, 3)
    cm = metrics.confusion_matrix(jnp.asarray(predictions), jnp.asarray(labels), num_classes=3)
    np.testing.assert_array_equal(cm, 2 * EXPECTED_CM)


def test_host_confusion_matrix_counts_what_the_device_one_counts():
    np.testing.assert_array_equal(
        metrics.host_confusion_matrix(PREDICTIONS, LABELS, num_classes=3), EXPECTED_CM)
    # uint8 predictions (as the evaluator makes them), -1 and out-of-range values, ignore 255.
    rng = np.random.default_rng(0)
    labels = rng.choice([-1, 0, 1, 2, 3, 4, 255], size=(37, 53)).astype(np.int32)
    predictions = rng.integers(0, 6, size=(37, 53)).astype(np.uint8)
    host = metrics.host_confusion_matrix(predictions, labels, num_classes=5)
    device = metrics.confusion_matrix(jnp.asarray(predictions[None], jnp.int32),
                                      jnp.asarray(labels[None]), num_classes=5)
    assert host.dtype == np.int64 and host.sum() > 0
    np.testing.assert_array_equal(host, np.asarray(device))
    with pytest.raises(ValueError, match="do not match"):
        metrics.host_confusion_matrix(predictions, labels[:-1], num_classes=5)
    with pytest.raises(TypeError, match="not integer class indices"):
        metrics.host_confusion_matrix(predictions.astype(np.float32), labels, num_classes=5)


def test_confusion_matrix_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="do not match"):
        metrics.confusion_matrix(jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 5), jnp.int32),
                                 num_classes=3)
    with pytest.raises(TypeError, match="neither logits"):
        metrics.confusion_matrix(jnp.zeros((1, 4)), jnp.zeros((1, 4), jnp.int32), num_classes=3)
    with pytest.raises(ValueError, match="num_classes=3"):
        metrics.confusion_matrix(jnp.zeros((1, 4, 2)), jnp.zeros((1, 4), jnp.int32),
                                 num_classes=3)


def test_metrics_with_a_class_predicted_but_never_labelled():
    m = metrics.metrics_from_confusion(EXPECTED_CM)
    assert m["per_class_iou"] == pytest.approx([2 / 5, 1 / 2, 0.0])
    assert m["miou"] == pytest.approx((2 / 5 + 1 / 2 + 0) / 3)
    assert m["pixel_accuracy"] == pytest.approx(4 / 7)
    assert m["per_class_accuracy"][:2] == pytest.approx([1 / 2, 2 / 3])
    assert math.isnan(m["per_class_accuracy"][2])
    assert m["mean_accuracy"] == pytest.approx(7 / 12)
    assert m["per_class_dice"] == pytest.approx([4 / 7, 2 / 3, 0.0])
    assert m["dice"] == pytest.approx((4 / 7 + 2 / 3) / 3)
    assert m["fw_iou"] == pytest.approx(31 / 70)   # 4/7 * 2/5 + 3/7 * 1/2


def test_class_absent_from_labels_and_predictions_is_nan_and_left_out():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    m = metrics.metrics_from_confusion(cm, class_names=("a", "b", "c"))
    assert m["per_class_iou"][:2] == pytest.approx([3 / 4, 2 / 3])
    assert math.isnan(m["per_class_iou"][2]) and math.isnan(m["per_class_dice"][2])
    assert m["miou"] == pytest.approx(17 / 24)
    assert m["dice"] == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert m["iou/a"] == pytest.approx(3 / 4) and math.isnan(m["iou/c"])
    assert metrics.scalar_metrics(m, "val/")["val/miou"] == pytest.approx(17 / 24)
    assert "val/per_class_iou" not in metrics.scalar_metrics(m, "val/")
    with pytest.raises(ValueError, match="2 class_names for a 3-class"):
        metrics.metrics_from_confusion(cm, class_names=("a", "b"))


def test_validate_labels_names_offending_values_and_where():
    metrics.validate_labels(np.array([0, 1, 2, 255]), 3, 255, where="ok")
    with pytest.raises(ValueError, match=r"camvid/train/0001.png: label values \[-1, 7\]"):
        metrics.validate_labels(np.array([[0, 7], [255, -1]]), 3, 255,
                                where="camvid/train/0001.png")


def test_format_metrics_table():
    m = metrics.metrics_from_confusion(EXPECTED_CM)
    table = metrics.format_metrics_table(m, ["sky", "road", "car"])
    lines = table.splitlines()
    assert lines[0] == "| class | IoU | accuracy | Dice | precision |"
    assert lines[2] == "| sky | 40.00 | 50.00 | 57.14 | 66.67 |"
    assert lines[4] == "| car | 0.00 | n/a | 0.00 | 0.00 |"
    assert lines[5] == "| **mean** | 30.00 | 58.33 | 41.27 | 44.44 |"
    assert "pixel accuracy 57.14" in table
