"""Losses against hand-computed numbers and PyTorch's cross_entropy."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from segjax.config import base_config
from segjax import losses

# One image of 1x4 pixels, 3 classes; pixel 3 is ignored (255).
LOGITS = np.array([[[[2.0, 0.0, 0.0],
                     [0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0],
                     [5.0, -5.0, 3.0]]]], np.float32)
LABELS = np.array([[[0, 1, 2, 255]]], np.int32)


def _ce(row, label):
    """-log softmax(row)[label], by hand."""
    return -(row[label] - math.log(sum(math.exp(v) for v in row)))


CE = [_ce([2, 0, 0], 0), _ce([0, 1, 0], 1), _ce([0, 0, 0], 2)]


def _loss_config(**overrides):
    config = base_config().loss
    config.update(overrides)
    return config


def test_cross_entropy_mean_over_valid_pixels_only():
    loss = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))
    assert float(loss) == pytest.approx(sum(CE) / 3, rel=1e-6)
    assert CE[2] == pytest.approx(math.log(3))


def test_cross_entropy_class_weights_hand_value_and_torch_parity():
    weights = (0.5, 2.0, 1.0)
    loss = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), class_weights=weights)
    expected = (0.5 * CE[0] + 2.0 * CE[1] + 1.0 * CE[2]) / (0.5 + 2.0 + 1.0)
    assert float(loss) == pytest.approx(expected, rel=1e-6)

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 6)).astype(np.int32)
    labels[0, :2] = 255
    weights = (0.3, 1.7, 1.0, 2.5)
    for smoothing in (0.0, 0.1):
        ours = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                    class_weights=weights, label_smoothing=smoothing)
        reference = torch.nn.functional.cross_entropy(
            torch.from_numpy(logits).permute(0, 3, 1, 2), torch.from_numpy(labels).long(),
            weight=torch.tensor(weights), ignore_index=255, label_smoothing=smoothing)
        assert float(ours) == pytest.approx(reference.item(), rel=1e-5)


def test_cross_entropy_label_smoothing_matches_torch_without_weights():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 3, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(1, 3, 3)).astype(np.int32)
    labels[0, 0, 0] = 255
    ours = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), label_smoothing=0.2)
    reference = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits).permute(0, 3, 1, 2), torch.from_numpy(labels).long(),
        ignore_index=255, label_smoothing=0.2)
    assert float(ours) == pytest.approx(reference.item(), rel=1e-5)


def test_pixel_weight_map_scales_pixels_but_not_the_normaliser():
    weight = np.array([[[10.0, 1.0, 1.0, 7.0]]], np.float32)  # pixel 3 ignored anyway
    loss = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS),
                                pixel_weights=jnp.asarray(weight))
    assert float(loss) == pytest.approx((10 * CE[0] + CE[1] + CE[2]) / 3, rel=1e-6)
    weighted = losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS),
                                    class_weights=(0.5, 2.0, 1.0),
                                    pixel_weights=jnp.asarray(weight))
    expected = (0.5 * 10 * CE[0] + 2.0 * CE[1] + CE[2]) / 3.5
    assert float(weighted) == pytest.approx(expected, rel=1e-6)


def test_all_ignored_gives_zero_and_bf16_accumulates_in_float32():
    labels = np.full((1, 1, 4), 255, np.int32)
    assert float(losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(labels))) == 0.0
    loss = jax.jit(losses.cross_entropy)(jnp.asarray(LOGITS, jnp.bfloat16), jnp.asarray(LABELS))
    assert loss.dtype == jnp.float32
    assert float(loss) == pytest.approx(sum(CE) / 3, rel=1e-2)


def test_cross_entropy_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="center_crop_labels"):
        losses.cross_entropy(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 6, 6), jnp.int32))
    with pytest.raises(ValueError, match="class_weights: expected 3"):
        losses.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), class_weights=(1.0, 2.0))


def test_dice_of_perfect_prediction_is_zero():
    labels = np.array([[[0, 1], [2, 255]]], np.int32)
    logits = 50.0 * jax.nn.one_hot(jnp.where(labels == 255, 0, labels), 3)
    loss = losses.soft_dice_loss(logits, jnp.asarray(labels), num_classes=3)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_dice_known_case():
    # Uniform logits: every valid pixel has p = 1/2 for both classes.
    labels = np.array([[[0, 0, 1, 255]]], np.int32)
    logits = jnp.zeros((1, 1, 4, 2))
    loss = losses.soft_dice_loss(logits, jnp.asarray(labels), num_classes=2, smooth=1.0)
    # class 0: I = 1, sum p = 1.5, |t| = 2 -> (2 + 1) / (3.5 + 1); class 1: I = .5, (1 + 1) / (2.5 + 1)
    expected = 1 - ((3 / 4.5) + (2 / 3.5)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="num_classes=3"):
        losses.soft_dice_loss(logits, jnp.asarray(labels), num_classes=3)


def test_center_crop_labels_unet_572_to_388():
    labels = jnp.arange(572 * 572, dtype=jnp.int32).reshape(1, 572, 572)
    logits = jnp.zeros((1, 388, 388, 2))
    cropped = losses.center_crop_labels(labels, logits)
    assert cropped.shape == (1, 388, 388)
    assert int(cropped[0, 0, 0]) == 92 * 572 + 92            # (572 - 388) / 2 = 92
    assert int(cropped[0, -1, -1]) == (92 + 387) * 572 + 92 + 387
    odd = losses.center_crop_labels(jnp.arange(7)[None, None, :].repeat(3, 1), jnp.zeros((1, 3, 4, 2)))
    np.testing.assert_array_equal(odd[0, 0], [1, 2, 3, 4])    # extra pixel cut at the end
    assert losses.center_crop_labels(labels, jnp.zeros((1, 572, 572, 2))) is labels
    with pytest.raises(ValueError, match="larger than labels"):
        losses.center_crop_labels(jnp.zeros((1, 4, 4)), jnp.zeros((1, 6, 6, 2)))


def test_segmentation_loss_crops_labels_and_weight_map():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    labels = rng.integers(0, 2, size=(1, 8, 8)).astype(np.int32)
    weight = rng.uniform(1, 5, size=(1, 8, 8)).astype(np.float32)
    config = _loss_config(use_weight_map=True)
    loss, parts = losses.segmentation_loss({"logits": jnp.asarray(logits)},
                                           {"label": labels, "weight": weight}, config,
                                           num_classes=2, ignore_index=255)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, labels[:, 2:6, 2:6, None], -1)[..., 0]
    assert float(loss) == pytest.approx(float((nll * weight[:, 2:6, 2:6]).mean()), rel=1e-5)
    assert set(parts) == {"cross_entropy", "loss"}
    with pytest.raises(KeyError, match="'weight'"):
        losses.segmentation_loss({"logits": logits}, {"label": labels}, config,
                                 num_classes=2, ignore_index=255)


def test_segmentation_loss_aux_and_dice_weighting():
    main = jnp.asarray(LOGITS)
    aux = jnp.asarray(LOGITS[..., ::-1].copy())
    batch = {"label": jnp.asarray(LABELS)}
    config = _loss_config(name="cross_entropy+dice", weights=(1.0, 0.5), aux_weight=0.4)
    loss, parts = jax.jit(lambda o, b: losses.segmentation_loss(
        o, b, config, num_classes=3, ignore_index=255))({"logits": main, "aux_logits": aux}, batch)
    ce = losses.cross_entropy(main, batch["label"])
    dice = losses.soft_dice_loss(main, batch["label"], num_classes=3)
    aux_total = (losses.cross_entropy(aux, batch["label"])
                 + 0.5 * losses.soft_dice_loss(aux, batch["label"], num_classes=3))
    assert float(parts["cross_entropy"]) == pytest.approx(float(ce), rel=1e-6)
    assert float(parts["dice"]) == pytest.approx(float(dice), rel=1e-6)
    assert float(parts["aux"]) == pytest.approx(float(aux_total), rel=1e-6)
    assert float(loss) == pytest.approx(float(ce + 0.5 * dice + 0.4 * aux_total), rel=1e-6)
    assert float(parts["loss"]) == float(loss)


def test_segmentation_loss_dice_only_and_class_weights_from_config():
    batch = {"label": jnp.asarray(LABELS)}
    outputs = {"logits": jnp.asarray(LOGITS)}
    loss, parts = losses.segmentation_loss(outputs, batch, _loss_config(name="dice"),
                                           num_classes=3, ignore_index=255)
    assert set(parts) == {"dice", "loss"}
    weighted, _ = losses.segmentation_loss(outputs, batch,
                                           _loss_config(class_weights=(0.5, 2.0, 1.0)),
                                           num_classes=3, ignore_index=255)
    expected = (0.5 * CE[0] + 2.0 * CE[1] + CE[2]) / 3.5
    assert float(weighted) == pytest.approx(expected, rel=1e-6)


def test_unknown_loss_name_lists_valid_names():
    config = ml_collections.ConfigDict(dict(base_config().loss))
    config.name = "cross_entropy+dcie"
    with pytest.raises(ValueError, match="'dcie' is not a registered loss; valid: "
                                         "([a-z0-9_]+, )*cross_entropy, dice(, [a-z0-9_]+)*, "
                                         "or terms joined with '\\+'"):
        losses.segmentation_loss({"logits": jnp.asarray(LOGITS)}, {"label": LABELS}, config,
                                 num_classes=3, ignore_index=255)


# Two images of 1x2 pixels, 2 classes, uniform logits (p = 1/2 everywhere):
# image A labels [0, 0], image B labels [0, 1].
TWO_IMAGES = np.array([[[0, 0]], [[0, 1]]], np.int32)


def _paper_dice_loss(probs, labels, num_classes):
    """No New-Net's formula, -2/|K| sum_k sum_i u_ik v_ik / (sum_i u_ik + sum_i v_ik), by loops."""
    total = 0.0
    for k in range(num_classes):
        u = [p[k] for p in probs]
        v = [1.0 if y == k else 0.0 for y in labels]
        total += sum(a * b for a, b in zip(u, v)) / (sum(u) + sum(v))
    return -2.0 * total / num_classes


def test_batch_dice_is_the_papers_multiclass_dice_plus_one():
    logits = jnp.zeros((2, 1, 2, 2))
    loss = losses.soft_dice_loss(logits, jnp.asarray(TWO_IMAGES), num_classes=2, smooth=0.0)
    # class 0: I = 3 * 1/2, sum p = 2, |t| = 3 -> 3/5; class 1: I = 1/2, sum p = 2, |t| = 1 -> 1/3
    assert float(loss) == pytest.approx(1 - (3 / 5 + 1 / 3) / 2, rel=1e-6)
    paper = _paper_dice_loss([[0.5, 0.5]] * 4, TWO_IMAGES.ravel().tolist(), 2)
    assert float(loss) == pytest.approx(1 + paper, rel=1e-6)


def test_per_image_dice_and_background_excluded():
    logits = jnp.zeros((2, 1, 2, 2))
    labels = jnp.asarray(TWO_IMAGES)
    per_image = losses.soft_dice_loss(logits, labels, num_classes=2, smooth=0.0, batch=False)
    # A: class 0 -> 2 * 1 / (1 + 2) = 2/3, class 1 -> 0 / (1 + 0) = 0; B: 1/2 and 1/2
    assert float(per_image) == pytest.approx(1 - (2 / 3 + 0 + 1 / 2 + 1 / 2) / 4, rel=1e-6)
    foreground = losses.soft_dice_loss(logits, labels, num_classes=2, smooth=0.0,
                                       include_background=False)
    assert float(foreground) == pytest.approx(1 - 1 / 3, rel=1e-6)


def test_dice_without_smoothing_counts_a_class_absent_everywhere_as_perfect():
    labels = jnp.asarray([[[0, 1, 1, 0]]], jnp.int32)
    logits = 200.0 * jax.nn.one_hot(labels, 3)        # class 2: p underflows to exactly 0
    loss = losses.soft_dice_loss(logits, labels, num_classes=3, smooth=0.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(float(jax.grad(lambda x: losses.soft_dice_loss(
        x, labels, num_classes=3, smooth=0.0))(logits).sum()))


def test_dice_and_dice_ce_terms_read_config_loss_dice():
    logits = jnp.zeros((2, 1, 2, 2))
    batch = {"label": jnp.asarray(TWO_IMAGES)}
    dice = {"smooth": 0.0, "batch": True, "include_background": True}
    config = _loss_config(name="dice_ce", dice=ml_collections.ConfigDict(dice))
    dice_value = 1 - (3 / 5 + 1 / 3) / 2
    loss, parts = losses.segmentation_loss({"logits": logits}, batch, config, num_classes=2,
                                           ignore_index=255)
    assert float(parts["dice_ce"]) == pytest.approx(math.log(2) + dice_value, rel=1e-6)
    config_sum = _loss_config(name="cross_entropy+dice", dice=ml_collections.ConfigDict(dice))
    total, parts = losses.segmentation_loss({"logits": logits}, batch, config_sum, num_classes=2,
                                            ignore_index=255)
    assert float(total) == pytest.approx(float(loss), rel=1e-6)
    assert float(parts["dice"]) == pytest.approx(dice_value, rel=1e-6)
    default = _loss_config(name="dice")          # smooth 1: (2I + 1) / (P + T + 1)
    loss, _ = losses.segmentation_loss({"logits": logits}, batch, default, num_classes=2,
                                       ignore_index=255)
    assert float(loss) == pytest.approx(1 - (4 / 6 + 2 / 4) / 2, rel=1e-6)
    with pytest.raises(KeyError, match="unknown field"):
        losses.dice_term({"logits": logits}, batch, num_classes=2, ignore_index=255,
                         config={"dice": {"smoth": 0.0}})
