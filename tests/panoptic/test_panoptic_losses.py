"""Panoptic-DeepLab's loss terms against NumPy references; the config-driven sum."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from segjax import losses
from segjax.panoptic import losses as panoptic_losses


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference_bootstrapped(logits, labels, weights, top_k, ignore_index=255):
    """Per image: CE x weight, the top round(k * pixels) values, mean over the non-zero ones."""
    per_image = []
    for image_logits, image_labels, image_weights in zip(logits, labels, weights):
        valid = image_labels != ignore_index
        safe = np.where(valid, image_labels, 0)
        ce = -np.take_along_axis(_log_softmax(image_logits), safe[..., None], -1)[..., 0]
        loss = np.sort((ce * valid * image_weights).ravel())[::-1]
        kept = loss[:int(round(top_k * loss.size))]
        per_image.append(kept[kept != 0].mean() if np.any(kept != 0) else 0.0)
    return np.mean(per_image)


def _panoptic_batch(seed=0, shape=(2, 6, 5)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, shape)
    labels[0, 0, :3] = 255
    batch = {
        "label": labels,
        "semantic_weight": rng.choice([1.0, 3.0], shape).astype(np.float32),
        "center": rng.uniform(0, 1, shape).astype(np.float32),
        "center_weight": (labels != 255).astype(np.float32),
        "offset": rng.normal(0, 5, shape + (2,)).astype(np.float32),
        "offset_weight": (labels == 1).astype(np.float32),
    }
    outputs = {"logits": rng.normal(0, 2, shape + (3,)).astype(np.float32),
               "center": rng.uniform(0, 1, shape + (1,)).astype(np.float32),
               "offset": rng.normal(0, 5, shape + (2,)).astype(np.float32)}
    return outputs, batch


@pytest.mark.parametrize("top_k", [0.2, 0.5, 1.0])
def test_bootstrapped_cross_entropy_matches_reference(top_k):
    outputs, batch = _panoptic_batch()
    value = panoptic_losses.bootstrapped_cross_entropy(
        outputs["logits"], batch["label"], top_k_percent=top_k,
        pixel_weights=batch["semantic_weight"])
    expected = reference_bootstrapped(outputs["logits"], batch["label"],
                                      batch["semantic_weight"], top_k)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_all_pixels_without_weights_is_cross_entropy():
    outputs, batch = _panoptic_batch(1)
    labels = np.where(batch["label"] == 255, 0, batch["label"])
    value = panoptic_losses.bootstrapped_cross_entropy(outputs["logits"], labels,
                                                       top_k_percent=1.0)
    np.testing.assert_allclose(float(value), float(losses.cross_entropy(outputs["logits"],
                                                                        labels)), rtol=1e-5)


def test_center_and_offset_terms():
    outputs, batch = _panoptic_batch(2)
    kwargs = dict(num_classes=3, ignore_index=255, config={})
    center = panoptic_losses.center_mse_term(outputs, batch, **kwargs)
    offset = panoptic_losses.offset_l1_term(outputs, batch, **kwargs)
    squared = (outputs["center"][..., 0] - batch["center"]) ** 2 * batch["center_weight"]
    absolute = np.abs(outputs["offset"] - batch["offset"]).mean(-1) * batch["offset_weight"]
    np.testing.assert_allclose(float(center), np.mean(
        squared.sum((1, 2)) / batch["center_weight"].sum((1, 2))), rtol=1e-5)
    np.testing.assert_allclose(float(offset), np.mean(
        absolute.sum((1, 2)) / batch["offset_weight"].sum((1, 2))), rtol=1e-5)
    batch["offset_weight"][0] = 0       # an image without things contributes 0
    offset = panoptic_losses.offset_l1_term(outputs, batch, **kwargs)
    np.testing.assert_allclose(float(offset), 0.5 * absolute[1].sum()
                               / batch["offset_weight"][1].sum(), rtol=1e-5)


def test_config_driven_panoptic_loss():
    outputs, batch = _panoptic_batch(3)
    config = ml_collections.ConfigDict(dict(
        name="bootstrapped_cross_entropy+center_mse+offset_l1", weights=(1.0, 200.0, 0.01),
        class_weights=(), use_weight_map=False, aux_weight=0.4, label_smoothing=0.0,
        top_k_percent=0.2))
    batch = {key: jnp.asarray(value) for key, value in batch.items()}
    total, parts = losses.segmentation_loss(outputs, batch, config, num_classes=3,
                                            ignore_index=255)
    expected = (parts["bootstrapped_cross_entropy"] + 200 * parts["center_mse"]
                + 0.01 * parts["offset_l1"])
    np.testing.assert_allclose(float(total), float(expected), rtol=1e-6)
    del batch["center"]
    with pytest.raises(KeyError, match="panoptic targets come from a panoptic source"):
        losses.segmentation_loss(outputs, batch, config, num_classes=3, ignore_index=255)


def test_top_k_percent_out_of_range():
    outputs, batch = _panoptic_batch()
    with pytest.raises(ValueError, match="top_k_percent"):
        panoptic_losses.bootstrapped_cross_entropy(outputs["logits"], batch["label"],
                                                   top_k_percent=0.0)
