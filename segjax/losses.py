"""Segmentation losses and the config-driven sum of registered terms.

`config.loss.name` names registered loss terms (`segjax.registry`, kind
"loss"), one or several joined by '+' and weighted by `config.loss.weights`;
a new paper adds a loss with `@register("loss", name)` in its own module,
listed in `config.imports`. Built in (each checked against a reference
implementation in tests/test_losses.py):

    cross_entropy (label smoothing, class weights, weight map), bce,
    dice, dice_ce, jaccard, tversky, focal_tversky, focal,
    lovasz_softmax, lovasz_hinge, ohem_cross_entropy, boundary

Two label modes, told apart by the labels' shape:
- class indices: logits (N, *spatial, K), labels int (N, *spatial); softmax
  over the K classes (`config.model.head_activation = "softmax"`).
- channel stacks (multi-label / binary): logits and labels both
  (N, *spatial, K), labels 0 or 1 per channel, each channel an independent
  sigmoid (`head_activation = "sigmoid"`, `config.data.label_format =
  "channels"`); binary segmentation is K = 1. `bce` and `lovasz_hinge` take
  only these, `cross_entropy`, `lovasz_softmax` and `ohem_cross_entropy`
  only class indices; dice, jaccard, tversky, focal_tversky, focal and
  boundary take both (sigmoid probabilities per channel, or softmax).
2D and 3D alike. Every loss accumulates in float32 (bf16 logits are upcast
before the softmax) and is jit-able.

Which pixels count, the same in every loss: a pixel contributes only if its
label is in [0, K) and is not `ignore_index` (channel stacks: an element
counts only if it is 0 or 1, so `ignore_index` skips it). Out-of-range
labels cannot raise inside `jit`, so they are skipped here too;
`segjax.metrics.validate_labels` checks them on the host. A batch with no
valid pixel gives a loss of 0 (PyTorch gives NaN), so a crop that is all
void does not poison training.

Conventions (chosen to match PyTorch, which the tests use as the reference):
- class weights: sum_i w[y_i] * ce_i / sum_i w[y_i] over valid pixels, as
  `torch.nn.functional.cross_entropy(weight=...)`; label smoothing as PyTorch's
  `label_smoothing` (also weighted by the class weights).
- a per-pixel weight map (the U-Net paper's border weights) multiplies each
  pixel's loss but not the normaliser, which stays the number of valid pixels
  (or the sum of their class weights): normalising by the map's own sum would
  cancel the emphasis it is meant to add.
- valid-convolution models (the paper's U-Net) emit logits smaller than the
  labels; `center_crop_labels` crops the labels (and weight map) to the
  logits' centre, the extra pixel of an odd difference at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from segjax import registry
from segjax.ops.distance import signed_distance
from segjax.registry import register
from segjax.ops.resize import center_crop


def valid_mask(labels: jax.Array, num_classes: int, ignore_index: int | None) -> jax.Array:
    """True where a label counts: in [0, num_classes) and not `ignore_index`."""
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return valid


def is_multilabel(logits: jax.Array, labels: jax.Array) -> bool:
    """True for channel-stack labels (N, *spatial, K), False for class indices (N, *spatial)."""
    return labels.ndim == logits.ndim


def channel_valid_mask(labels: jax.Array, ignore_index: int | None) -> jax.Array:
    """True where a channel-stack label counts: 0 or 1, and not `ignore_index`."""
    valid = (labels == 0) | (labels == 1)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return valid


def _check_shapes(fn: str, logits: jax.Array, labels: jax.Array, what: str = "labels"):
    if logits.shape[:-1] != labels.shape and not (what == "labels"
                                                  and logits.shape == labels.shape):
        expected = ("(N, *spatial) class indices or (N, *spatial, K) channel masks"
                    if what == "labels" else "(N, *spatial)")
        raise ValueError(
            f"{fn}: logits {logits.shape} (N, *spatial, K) do not match {what} {labels.shape} "
            f"{expected}; crop larger {what} with center_crop_labels first")


def _require_mode(fn: str, logits: jax.Array, labels: jax.Array, multilabel: bool) -> None:
    _check_shapes(fn, logits, labels)
    if is_multilabel(logits, labels) != multilabel:
        wanted = ("channel-stack labels (N, *spatial, K)" if multilabel
                  else "class-index labels (N, *spatial)")
        hint = ("class indices train with cross_entropy (softmax)" if multilabel else
                "channel stacks (model.head_activation='sigmoid') train with bce")
        raise ValueError(f"{fn}: takes {wanted}, got labels {labels.shape} for logits "
                         f"{logits.shape}; {hint}")


def _class_weight_vector(class_weights, num_classes: int) -> jax.Array | None:
    if class_weights is None:
        return None
    weights = jnp.asarray(class_weights, jnp.float32)
    if weights.shape != (num_classes,):
        raise ValueError(f"class_weights: expected {num_classes} weights (one per class), "
                         f"got shape {weights.shape}")
    return weights


def _safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0),
                     0.0)


def cross_entropy(logits: jax.Array, labels: jax.Array, *, ignore_index: int | None = 255,
                  class_weights: Sequence[float] | jax.Array | None = None,
                  pixel_weights: jax.Array | None = None,
                  label_smoothing: float = 0.0) -> jax.Array:
    """Mean softmax cross-entropy over valid pixels (see the module docstring)."""
    _require_mode("cross_entropy", logits, labels, multilabel=False)
    if pixel_weights is not None:
        _check_shapes("cross_entropy", logits, pixel_weights, "pixel_weights")
    num_classes = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = valid_mask(labels, num_classes, ignore_index)
    safe_labels = jnp.where(valid, labels, 0).astype(jnp.int32)
    nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]

    weights = _class_weight_vector(class_weights, num_classes)
    if weights is None:
        label_weight = jnp.ones_like(nll)
        smooth = -jnp.mean(log_probs, axis=-1)
    else:
        label_weight = weights[safe_labels]
        smooth = -jnp.sum(log_probs * weights, axis=-1) / num_classes
    per_pixel = (1.0 - label_smoothing) * label_weight * nll + label_smoothing * smooth

    valid = valid.astype(jnp.float32)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights.astype(jnp.float32)
    return _safe_divide(jnp.sum(per_pixel * valid), jnp.sum(label_weight * valid))


def probabilities_and_targets(logits: jax.Array, labels: jax.Array, *,
                              ignore_index: int | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(probabilities, targets, valid), float32 (N, *spatial, K), zero where not valid.

    Class indices: softmax probabilities and one-hot targets, a pixel valid in
    every channel or none. Channel stacks: sigmoid probabilities and the 0/1
    labels, each element valid on its own.
    """
    logits = logits.astype(jnp.float32)
    if is_multilabel(logits, labels):
        valid = channel_valid_mask(labels, ignore_index).astype(jnp.float32)
        return jax.nn.sigmoid(logits) * valid, (labels == 1) * valid, valid
    num_classes = logits.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_index)[..., None].astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1) * valid
    target = jax.nn.one_hot(jnp.where(valid[..., 0] > 0, labels, 0), num_classes) * valid
    return probs, target, jnp.broadcast_to(valid, probs.shape)


def _ratio_or_one(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator, and 1 where the denominator is 0 (nothing to get wrong)."""
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 1.0)


def _class_overlaps(fn: str, logits, labels, *, num_classes: int, ignore_index, batch: bool,
                    include_background: bool):
    """Soft (true positives, predicted, actual) per class, summed over the batch (`batch`)
    or per image; class 0 dropped when not `include_background` (class indices only)."""
    _check_shapes(fn, logits, labels)
    if logits.shape[-1] != num_classes:
        raise ValueError(f"{fn}: logits have {logits.shape[-1]} classes, "
                         f"num_classes={num_classes}")
    if not include_background:
        if is_multilabel(logits, labels):
            raise ValueError(f"{fn}: include_background=False drops class 0 of class-index "
                             "labels; channel-stack labels have no background channel")
        if num_classes < 2:
            raise ValueError(f"{fn}: include_background=False needs at least 2 classes")
    probs, target, _ = probabilities_and_targets(logits, labels, ignore_index=ignore_index)
    sum_axes = tuple(range(0 if batch else 1, logits.ndim - 1))
    overlaps = (jnp.sum(probs * target, axis=sum_axes), jnp.sum(probs, axis=sum_axes),
                jnp.sum(target, axis=sum_axes))
    return overlaps if include_background else tuple(o[..., 1:] for o in overlaps)


def soft_dice_loss(logits: jax.Array, labels: jax.Array, *, num_classes: int,
                   ignore_index: int | None = 255, smooth: float = 1.0,
                   batch: bool = True, include_background: bool = True) -> jax.Array:
    """1 - mean over classes of the soft Dice of probabilities vs targets.

    Dice_k = (2 sum_i p_ik t_ik + smooth) / (sum_i p_ik + sum_i t_ik + smooth).
    `batch=True` sums over the whole batch (one Dice per class: the batch is one
    pseudo-volume, No New-Net's multi-class Dice and nnU-Net's "batch Dice");
    `batch=False` takes one Dice per image and class and averages them.
    `include_background=False` leaves class 0 out of the mean (nnU-Net's
    default). With `smooth=0` (the paper's formula) a class absent from both
    the labels and the prediction counts as Dice 1. Ignored pixels are left
    out of both the probabilities and the targets. Softmax over class
    indices, or a sigmoid per channel of channel-stack labels.
    """
    tp, predicted, actual = _class_overlaps(
        "soft_dice_loss", logits, labels, num_classes=num_classes, ignore_index=ignore_index,
        batch=batch, include_background=include_background)
    dice = _ratio_or_one(2.0 * tp + smooth, predicted + actual + smooth)
    return 1.0 - jnp.mean(dice)


def tversky_index(logits: jax.Array, labels: jax.Array, *, num_classes: int,
                  ignore_index: int | None = 255, alpha: float = 0.3, beta: float = 0.7,
                  smooth: float = 1.0, batch: bool = True,
                  include_background: bool = True) -> jax.Array:
    """Soft Tversky index per class (Salehi et al. 2017), (K,) or (N, K) with batch=False:

        TI_k = (TP + smooth) / (TP + alpha FP + beta FN + smooth)

    with soft counts TP = sum p t, FP = sum p (1 - t), FN = sum (1 - p) t over
    valid pixels; alpha weighs false positives, beta false negatives
    (alpha = beta = 0.5: Dice; 1: Jaccard). 1 where the denominator is 0.
    """
    tp, predicted, actual = _class_overlaps(
        "tversky", logits, labels, num_classes=num_classes, ignore_index=ignore_index,
        batch=batch, include_background=include_background)
    return _ratio_or_one(tp + smooth,
                         tp + alpha * (predicted - tp) + beta * (actual - tp) + smooth)


def tversky_loss(logits: jax.Array, labels: jax.Array, **options) -> jax.Array:
    """1 - the mean Tversky index over classes (`tversky_index`'s options)."""
    return 1.0 - jnp.mean(tversky_index(logits, labels, **options))


def _power(values: jax.Array, exponent: float) -> jax.Array:
    """values ** exponent for values >= 0, with a zero (not infinite) gradient at 0."""
    if exponent == 0:
        return jnp.ones_like(values)
    positive = values > 0
    return jnp.where(positive, jnp.where(positive, values, 1.0) ** exponent, 0.0)


def focal_tversky_loss(logits: jax.Array, labels: jax.Array, *, gamma: float = 0.75,
                       **options) -> jax.Array:
    """Mean over classes of (1 - TI_k) ** gamma (Abraham and Khan 2019; their gamma 0.75
    is the paper's 1 / gamma with gamma 4/3). `options` as `tversky_index`."""
    index = tversky_index(logits, labels, **options)
    return jnp.mean(_power(jnp.maximum(1.0 - index, 0.0), gamma))


def jaccard_loss(logits: jax.Array, labels: jax.Array, *, num_classes: int,
                 ignore_index: int | None = 255, smooth: float = 1.0, batch: bool = True,
                 include_background: bool = True) -> jax.Array:
    """1 - mean over classes of the soft Jaccard index (IoU)
    (TP + smooth) / (sum p + sum t - TP + smooth): the Tversky index with alpha = beta = 1."""
    tp, predicted, actual = _class_overlaps(
        "jaccard", logits, labels, num_classes=num_classes, ignore_index=ignore_index,
        batch=batch, include_background=include_background)
    return 1.0 - jnp.mean(_ratio_or_one(tp + smooth, predicted + actual - tp + smooth))


def binary_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                         ignore_index: int | None = 255,
                         class_weights: Sequence[float] | jax.Array | None = None,
                         pixel_weights: jax.Array | None = None,
                         label_smoothing: float = 0.0) -> jax.Array:
    """Mean sigmoid cross-entropy of channel-stack labels over valid elements.

    Each channel is an independent binary problem (multi-label; K = 1 is
    binary). Class weights weigh channels, normalised as `cross_entropy`:
    sum w_k bce / sum w_k over valid elements. Label smoothing eps moves the
    targets to t (1 - eps) + eps / 2, so that a channel's loss equals the
    two-class cross-entropy with PyTorch's `label_smoothing=eps`. The weight
    map multiplies each pixel's elements but not the normaliser.
    """
    _require_mode("binary_cross_entropy", logits, labels, multilabel=True)
    if pixel_weights is not None:
        _check_shapes("binary_cross_entropy", logits, pixel_weights, "pixel_weights")
    logits = logits.astype(jnp.float32)
    valid = channel_valid_mask(labels, ignore_index).astype(jnp.float32)
    target = (labels == 1).astype(jnp.float32) * (1.0 - label_smoothing) + label_smoothing / 2
    per_element = sigmoid_cross_entropy(logits, target)
    weights = _class_weight_vector(class_weights, logits.shape[-1])
    weights = jnp.ones((logits.shape[-1],), jnp.float32) if weights is None else weights
    per_element = per_element * weights
    if pixel_weights is not None:
        per_element = per_element * pixel_weights.astype(jnp.float32)[..., None]
    return _safe_divide(jnp.sum(per_element * valid), jnp.sum(weights * valid))


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Elementwise binary cross-entropy of logits against targets in [0, 1], stable for any
    logit: max(z, 0) - z t + log(1 + exp(-|z|))."""
    return jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def focal_loss(logits: jax.Array, labels: jax.Array, *, gamma: float = 2.0,
               alpha: float | None = None, ignore_index: int | None = 255,
               class_weights: Sequence[float] | jax.Array | None = None,
               pixel_weights: jax.Array | None = None) -> jax.Array:
    """Focal loss (Lin et al. 2017): -(1 - p_t) ** gamma log p_t, mean over valid pixels.

    Class indices: p_t is the softmax probability of the true class (the
    multi-class form used for segmentation); class weights weigh pixels by
    their true class as `cross_entropy` (normalised by their sum); `alpha` is
    the binary form's and is not accepted (use class_weights). Channel stacks:
    Lin's sigmoid form on every (pixel, channel) element, with alpha_t =
    alpha for positives and 1 - alpha for negatives when `alpha` is given
    (the paper's 0.25), class weights per channel. gamma = 0 gives the
    (weighted) cross-entropy. The weight map multiplies pixels' terms, not
    the normaliser.
    """
    _check_shapes("focal_loss", logits, labels)
    if pixel_weights is not None:
        _check_shapes("focal_loss", logits, pixel_weights, "pixel_weights")
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    weights = _class_weight_vector(class_weights, num_classes)
    if is_multilabel(logits, labels):
        valid = channel_valid_mask(labels, ignore_index).astype(jnp.float32)
        target = (labels == 1).astype(jnp.float32)
        nll = sigmoid_cross_entropy(logits, target)
        per_element = _power(1.0 - jnp.exp(-nll), gamma) * nll
        if alpha is not None:
            per_element = per_element * (alpha * target + (1.0 - alpha) * (1.0 - target))
        element_weight = (jnp.ones((num_classes,), jnp.float32) if weights is None
                          else weights) * jnp.ones_like(nll)
        if pixel_weights is not None:
            per_element = per_element * pixel_weights.astype(jnp.float32)[..., None]
        return _safe_divide(jnp.sum(per_element * element_weight * valid),
                            jnp.sum(element_weight * valid))
    if alpha is not None:
        raise ValueError("focal_loss: alpha weighs positives of channel-stack (sigmoid) labels; "
                         "weigh the classes of class-index labels with class_weights")
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    valid = valid_mask(labels, num_classes, ignore_index)
    safe_labels = jnp.where(valid, labels, 0).astype(jnp.int32)
    log_pt = jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    per_pixel = -_power(1.0 - jnp.exp(log_pt), gamma) * log_pt
    label_weight = jnp.ones_like(log_pt) if weights is None else weights[safe_labels]
    valid = valid.astype(jnp.float32)
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights.astype(jnp.float32)
    return _safe_divide(jnp.sum(per_pixel * label_weight * valid),
                        jnp.sum(label_weight * valid))


def _lovasz_gradient(sorted_targets: jax.Array) -> jax.Array:
    """The Lovasz extension's weights for errors sorted in decreasing order (Berman et al.
    2018, Alg. 1): the increments of 1 - IoU as pixels join the prediction, along the last
    axis."""
    total = jnp.sum(sorted_targets, axis=-1, keepdims=True)
    intersection = total - jnp.cumsum(sorted_targets, axis=-1)
    union = total + jnp.cumsum(1.0 - sorted_targets, axis=-1)
    jaccard = 1.0 - intersection / union
    return jnp.concatenate([jaccard[..., :1], jnp.diff(jaccard, axis=-1)], axis=-1)


def _lovasz(errors: jax.Array, targets: jax.Array) -> jax.Array:
    """The Lovasz extension of the Jaccard loss per row of (R, P) errors (>= 0 where valid,
    -inf where not: sorted last, contributing nothing) and 0/1 targets."""
    order = jnp.argsort(-errors, axis=-1)
    errors = jnp.take_along_axis(errors, order, axis=-1)
    targets = jnp.take_along_axis(targets, order, axis=-1)
    counted = jnp.where(jnp.isfinite(errors), jnp.maximum(errors, 0.0), 0.0)
    return jnp.sum(counted * _lovasz_gradient(targets), axis=-1)


LOVASZ_CLASSES = ("present", "all")


def lovasz_softmax_loss(logits: jax.Array, labels: jax.Array, *, ignore_index: int | None = 255,
                        per_image: bool = False, classes: str = "present") -> jax.Array:
    """Lovasz-softmax (Berman et al. 2018): the Lovasz extension of each class's Jaccard
    loss on the errors |[y = k] - p_k| of the valid pixels, averaged over the classes present
    in the labels (`classes='present'`, the authors' default) or all classes; over the
    whole batch, or per image and averaged (`per_image`). 0 without a valid pixel."""
    _require_mode("lovasz_softmax_loss", logits, labels, multilabel=False)
    if classes not in LOVASZ_CLASSES:
        raise ValueError(f"lovasz_softmax_loss: classes must be one of {LOVASZ_CLASSES}, "
                         f"got {classes!r}")
    probs, target, valid = probabilities_and_targets(logits, labels, ignore_index=ignore_index)

    def one(probs, target, valid):   # (P, K) each
        errors = jnp.where(valid > 0, jnp.abs(target - probs), -jnp.inf).T
        losses = _lovasz(errors, target.T)
        counted = (jnp.sum(target, axis=0) > 0 if classes == "present"
                   else jnp.any(valid > 0, axis=0)).astype(jnp.float32)
        return _safe_divide(jnp.sum(losses * counted), jnp.sum(counted))

    num_classes = logits.shape[-1]
    if per_image:
        flat = [a.reshape(a.shape[0], -1, num_classes) for a in (probs, target, valid)]
        return jnp.mean(jax.vmap(one)(*flat))
    return one(*(a.reshape(-1, num_classes) for a in (probs, target, valid)))


def lovasz_hinge_loss(logits: jax.Array, labels: jax.Array, *, ignore_index: int | None = 255,
                      per_image: bool = False) -> jax.Array:
    """Lovasz hinge (Berman et al. 2018) of channel-stack labels: for each channel, the
    Lovasz extension of the Jaccard loss on the hinge errors 1 - z (2t - 1) of its valid
    elements; averaged over channels (and over images with `per_image`)."""
    _require_mode("lovasz_hinge_loss", logits, labels, multilabel=True)
    logits = logits.astype(jnp.float32)
    valid = channel_valid_mask(labels, ignore_index)
    target = (labels == 1).astype(jnp.float32)
    errors = jnp.where(valid, 1.0 - logits * (2.0 * target - 1.0), -jnp.inf)
    channels = logits.shape[-1]
    if per_image:
        rows = [jnp.moveaxis(a.reshape(a.shape[0], -1, channels), -1, 1).reshape(
            -1, a[0].size // channels) for a in (errors, target)]
    else:
        rows = [a.reshape(-1, channels).T for a in (errors, target)]
    return jnp.mean(_lovasz(*rows))


def ohem_cross_entropy(logits: jax.Array, labels: jax.Array, *, ignore_index: int | None = 255,
                       threshold: float = 0.7, min_kept: int = 100_000,
                       class_weights: Sequence[float] | jax.Array | None = None) -> jax.Array:
    """Online hard example mining cross-entropy, as HRNet-Semantic-Segmentation's
    `OhemCrossEntropy`: over the batch's valid pixels, those whose true-class probability
    is below max(threshold, the (min_kept + 1)-th smallest such probability) are kept (so
    at least min_kept pixels when there are more), and the loss is the plain mean of their
    cross-entropies (class weights multiply each pixel's term, not the count). 0 when no
    pixel is kept (PyTorch gives NaN)."""
    _require_mode("ohem_cross_entropy", logits, labels, multilabel=False)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    num_classes = logits.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_index).reshape(-1)
    safe_labels = jnp.where(valid, labels.reshape(-1), 0).astype(jnp.int32)
    log_pt = jnp.take_along_axis(log_probs.reshape(-1, num_classes), safe_labels[:, None],
                                 axis=-1)[:, 0]
    nll = -log_pt
    weights = _class_weight_vector(class_weights, num_classes)
    if weights is not None:
        nll = nll * weights[safe_labels]
    probability = jax.lax.stop_gradient(jnp.exp(log_pt))
    ranked = jnp.sort(jnp.where(valid, probability, jnp.inf))
    count = jnp.sum(valid)
    kth = ranked[jnp.clip(jnp.minimum(max(1, int(min_kept)), count - 1), 0, ranked.size - 1)]
    kept = (valid & (probability < jnp.maximum(kth, threshold))).astype(jnp.float32)
    return _safe_divide(jnp.sum(nll * kept), jnp.sum(kept))


def boundary_loss(logits: jax.Array, labels: jax.Array, *, ignore_index: int | None = 255,
                  include_background: bool = False,
                  spacing: Sequence[float] | None = None) -> jax.Array:
    """Boundary loss (Kervadec et al. 2019): mean over valid pixels and classes of
    p_k * phi_k, phi_k the signed distance map of class k's label mask (positive outside,
    minus the distance to the outside plus one inside; zero for a class absent from, or
    filling, the image), computed on the device (`segjax.ops.distance`). Ignored pixels
    count as outside every class for the distances and are left out of the mean. Class
    indices leave the background (class 0) out unless `include_background` (the authors'
    `idc` = foreground classes); channel stacks use every channel. `spacing`: one length
    per spatial axis (volumes)."""
    _check_shapes("boundary_loss", logits, labels)
    multilabel = is_multilabel(logits, labels)
    if not include_background and not multilabel and logits.shape[-1] < 2:
        raise ValueError("boundary_loss: include_background=False needs at least 2 classes")
    probs, target, valid = probabilities_and_targets(logits, labels, ignore_index=ignore_index)
    rank = logits.ndim - 2
    masks = jnp.moveaxis(target > 0.5, -1, 1)                     # (N, K, *spatial)
    distance = jnp.moveaxis(signed_distance(masks, spacing, spatial_axes=rank), 1, -1)
    if not include_background and not multilabel:
        probs, distance, valid = probs[..., 1:], distance[..., 1:], valid[..., 1:]
    return _safe_divide(jnp.sum(probs * distance * valid), jnp.sum(valid))


def center_crop_labels(labels_or_weights: jax.Array, logits: jax.Array) -> jax.Array:
    """Crops (N, *spatial) labels or weights (or (N, *spatial, K) channel-stack labels) to
    the spatial size of (N, *spatial', K) logits.

    For valid-convolution models whose output is smaller than their input
    (572 -> 388 in the U-Net paper). Equal sizes pass through unchanged.
    """
    target = tuple(logits.shape[1:-1])
    channels = labels_or_weights.ndim == logits.ndim     # channel-stack labels
    spatial = tuple(labels_or_weights.shape[1:-1] if channels else labels_or_weights.shape[1:])
    if len(spatial) != len(target):
        raise ValueError(f"center_crop_labels: labels {labels_or_weights.shape} have "
                         f"{len(spatial)} spatial axes, logits {logits.shape} have {len(target)}")
    if spatial == target:
        return labels_or_weights
    if any(s < t for s, t in zip(spatial, target)):
        raise ValueError(f"center_crop_labels: logits {logits.shape} are spatially larger than "
                         f"labels {labels_or_weights.shape}; the model's output must not exceed "
                         "its labels (resize the logits instead)")
    return center_crop(labels_or_weights, target, spatial_start=1)


def _field(loss_config: Any, name: str):
    try:
        return loss_config[name]
    except (KeyError, AttributeError) as error:
        raise KeyError(f"segmentation_loss: config.loss has no field {name!r}") from error


# --------------------------------------------------------------------------------------
# Registered loss terms. A term is called as
#     term(outputs, batch, *, num_classes, ignore_index, config) -> float32 scalar
# with outputs['logits'] one logits map (the main one, or one auxiliary head's),
# batch['label'] cropped to it, batch['weight'] (when config.use_weight_map)
# likewise, and config = config.loss. A new loss registers with
# `@register("loss", name)` from any module that config.imports names.

@register("loss", "cross_entropy")
def cross_entropy_term(outputs, batch, *, num_classes, ignore_index, config):
    """Pixel-wise cross-entropy with config.class_weights, label_smoothing and the weight map."""
    del num_classes
    class_weights = tuple(_field(config, "class_weights")) or None
    return cross_entropy(outputs["logits"], batch["label"], ignore_index=ignore_index,
                         class_weights=class_weights, pixel_weights=batch.get("weight"),
                         label_smoothing=float(_field(config, "label_smoothing")))


# Each term's options: the fields of its config.loss section and their defaults (a config
# written before a section existed gets the defaults).
REGION_DEFAULTS = {"smooth": 1.0, "batch": True, "include_background": True}
OPTION_DEFAULTS = {
    "dice": REGION_DEFAULTS,
    "jaccard": REGION_DEFAULTS,
    "tversky": {**REGION_DEFAULTS, "alpha": 0.3, "beta": 0.7, "gamma": 0.75},
    "focal": {"gamma": 2.0, "alpha": -1.0},
    "lovasz": {"per_image": False, "classes": "present"},
    "ohem": {"threshold": 0.7, "min_kept": 100_000},
    "boundary": {"include_background": False, "spacing": ()},
}


def _options(config, section: str) -> dict:
    """config.loss.<section> over its defaults, each value of its default's type."""
    defaults = OPTION_DEFAULTS[section]
    options = config.get(section) if hasattr(config, "get") else None
    options = dict(options.to_dict() if hasattr(options, "to_dict") else options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise KeyError(f"config.loss.{section} has unknown field(s) {unknown}; valid: "
                       f"{', '.join(defaults)}")
    return {key: type(default)(options.get(key, default)) for key, default in defaults.items()}


def _dice_options(config) -> dict:
    """config.loss.dice (smooth, batch, include_background); configs without it get the defaults."""
    return _options(config, "dice")


@register("loss", "dice")
def dice_term(outputs, batch, *, num_classes, ignore_index, config):
    """Soft Dice (config.loss.dice: smooth, batch, include_background; default: over the
    batch, every class, smooth 1). The weight map is not applied: it would distort the ratio."""
    return soft_dice_loss(outputs["logits"], batch["label"], num_classes=num_classes,
                          ignore_index=ignore_index, **_dice_options(config))


@register("loss", "dice_ce")
def dice_cross_entropy_term(outputs, batch, *, num_classes, ignore_index, config):
    """Soft Dice + cross-entropy with weight 1 each: nnU-Net's default loss (DC_and_CE_loss),
    as one term; `cross_entropy+dice` gives the same sum with both parts logged."""
    kwargs = dict(num_classes=num_classes, ignore_index=ignore_index, config=config)
    return (cross_entropy_term(outputs, batch, **kwargs)
            + dice_term(outputs, batch, **kwargs))


@register("loss", "bce")
def binary_cross_entropy_term(outputs, batch, *, num_classes, ignore_index, config):
    """Sigmoid cross-entropy of channel-stack labels (multi-label, binary), with
    config.class_weights (per channel), label_smoothing and the weight map."""
    del num_classes
    return binary_cross_entropy(outputs["logits"], batch["label"], ignore_index=ignore_index,
                                class_weights=tuple(_field(config, "class_weights")) or None,
                                pixel_weights=batch.get("weight"),
                                label_smoothing=float(_field(config, "label_smoothing")))


@register("loss", "jaccard")
def jaccard_term(outputs, batch, *, num_classes, ignore_index, config):
    """Soft Jaccard (IoU) loss (config.loss.jaccard: smooth, batch, include_background)."""
    return jaccard_loss(outputs["logits"], batch["label"], num_classes=num_classes,
                        ignore_index=ignore_index, **_options(config, "jaccard"))


def _tversky_options(config) -> tuple[dict, float]:
    options = _options(config, "tversky")
    return options, options.pop("gamma")


@register("loss", "tversky")
def tversky_term(outputs, batch, *, num_classes, ignore_index, config):
    """Tversky loss (config.loss.tversky: alpha on false positives, beta on false negatives,
    smooth, batch, include_background)."""
    options, _ = _tversky_options(config)
    return tversky_loss(outputs["logits"], batch["label"], num_classes=num_classes,
                        ignore_index=ignore_index, **options)


@register("loss", "focal_tversky")
def focal_tversky_term(outputs, batch, *, num_classes, ignore_index, config):
    """Focal Tversky loss: config.loss.tversky, and its gamma as the exponent."""
    options, gamma = _tversky_options(config)
    return focal_tversky_loss(outputs["logits"], batch["label"], num_classes=num_classes,
                              ignore_index=ignore_index, gamma=gamma, **options)


@register("loss", "focal")
def focal_term(outputs, batch, *, num_classes, ignore_index, config):
    """Focal loss (config.loss.focal: gamma; alpha >= 0 for channel stacks, < 0 for none),
    with config.class_weights and the weight map."""
    del num_classes
    options = _options(config, "focal")
    return focal_loss(outputs["logits"], batch["label"], gamma=options["gamma"],
                      alpha=options["alpha"] if options["alpha"] >= 0 else None,
                      ignore_index=ignore_index,
                      class_weights=tuple(_field(config, "class_weights")) or None,
                      pixel_weights=batch.get("weight"))


@register("loss", "lovasz_softmax")
def lovasz_softmax_term(outputs, batch, *, num_classes, ignore_index, config):
    """Lovasz-softmax of class-index labels (config.loss.lovasz: per_image, classes)."""
    del num_classes
    return lovasz_softmax_loss(outputs["logits"], batch["label"], ignore_index=ignore_index,
                               **_options(config, "lovasz"))


@register("loss", "lovasz_hinge")
def lovasz_hinge_term(outputs, batch, *, num_classes, ignore_index, config):
    """Lovasz hinge of channel-stack labels (config.loss.lovasz.per_image)."""
    del num_classes
    return lovasz_hinge_loss(outputs["logits"], batch["label"], ignore_index=ignore_index,
                             per_image=_options(config, "lovasz")["per_image"])


@register("loss", "ohem_cross_entropy")
def ohem_cross_entropy_term(outputs, batch, *, num_classes, ignore_index, config):
    """OHEM cross-entropy (config.loss.ohem: threshold, min_kept) with config.class_weights."""
    del num_classes
    options = _options(config, "ohem")
    return ohem_cross_entropy(outputs["logits"], batch["label"], ignore_index=ignore_index,
                              threshold=options["threshold"], min_kept=options["min_kept"],
                              class_weights=tuple(_field(config, "class_weights")) or None)


@register("loss", "boundary")
def boundary_term(outputs, batch, *, num_classes, ignore_index, config):
    """Kervadec et al.'s boundary loss (config.loss.boundary: include_background, spacing);
    used beside a region loss, e.g. name='dice+boundary' with weights (1, 0.01)."""
    del num_classes
    options = _options(config, "boundary")
    return boundary_loss(outputs["logits"], batch["label"], ignore_index=ignore_index,
                         include_background=options["include_background"],
                         spacing=tuple(options["spacing"]) or None)


def loss_terms(loss_config) -> list[tuple[str, float, Any]]:
    """(name, weight, term function) for each '+'-separated term of config.loss.name.

    `config.loss.weights` gives one weight per term (empty: all 1).
    """
    name = str(_field(loss_config, "name"))
    term_names = [part.strip() for part in name.split("+")]
    weights = tuple(float(w) for w in _field(loss_config, "weights")) or (1.0,) * len(term_names)
    if len(weights) != len(term_names):
        raise ValueError(f"config.loss.weights={weights} has {len(weights)} value(s) for the "
                         f"{len(term_names)} term(s) of config.loss.name={name!r}")
    terms = []
    for term_name in term_names:
        try:
            function = registry.get("loss", term_name).factory
        except KeyError:
            valid = registry.names("loss")
            raise ValueError(
                f"config.loss.name={name!r}: {term_name!r} is not a registered loss; valid: "
                f"{', '.join(valid)}, or terms joined with '+' (e.g. {'+'.join(valid[:2])}); "
                "new losses register through config.imports") from None
        terms.append((term_name, weights[len(terms)], function))
    return terms


def _cropped_batch(batch: Mapping[str, Any], logits, weight) -> dict:
    cropped = dict(batch)
    cropped["label"] = center_crop_labels(batch["label"], logits)
    if weight is None:
        cropped.pop("weight", None)
    else:
        cropped["weight"] = center_crop_labels(weight, logits)
    return cropped


def _weighted_terms(outputs, batch, weight, terms, **kwargs) -> tuple[jax.Array, dict]:
    """The weighted sum of `terms` on one logits map, and each unweighted term."""
    cropped = _cropped_batch(batch, outputs["logits"], weight)
    values = {name: jnp.asarray(function(outputs, cropped, **kwargs), jnp.float32)
              for name, _, function in terms}
    total = sum(term_weight * values[name] for name, term_weight, _ in terms)
    return jnp.asarray(total, jnp.float32), values


def segmentation_loss(outputs: Mapping[str, Any], batch: Mapping[str, Any], loss_config, *,
                      num_classes: int, ignore_index: int | None) -> tuple[jax.Array, dict]:
    """The loss `config.loss` asks for, and its named components.

    `config.loss.name` is one registered term or several joined by '+'
    (`cross_entropy+dice`), weighted by `config.loss.weights`. Reads
    outputs['logits'] and, when present, outputs['aux_logits'] (one array or a
    sequence of them, each added with weight `aux_weight`); batch['label'] and,
    when `use_weight_map`, batch['weight']. Returns (loss, components) with one
    component per term (unweighted, main logits), 'aux' (the aux heads'
    weighted term sums) where aux logits exist, and 'loss' (the total).
    """
    terms = loss_terms(loss_config)
    weight = None
    if _field(loss_config, "use_weight_map"):
        if batch.get("weight") is None:
            raise KeyError("config.loss.use_weight_map is True but the batch has no 'weight' "
                           "map; enable config.data.weight_map or turn use_weight_map off")
        weight = batch["weight"]
    kwargs = dict(num_classes=num_classes, ignore_index=ignore_index, config=loss_config)

    total, components = _weighted_terms(outputs, batch, weight, terms, **kwargs)
    aux_logits = outputs.get("aux_logits")
    if aux_logits is not None:
        if not isinstance(aux_logits, (list, tuple)):
            aux_logits = [aux_logits]
        aux = sum(_weighted_terms({"logits": a}, batch, weight, terms, **kwargs)[0]
                  for a in aux_logits)
        components["aux"] = aux
        total = total + float(_field(loss_config, "aux_weight")) * aux
    components["loss"] = total
    return total, components
