"""Segmentation losses: pixel-wise cross-entropy, soft Dice, and the config-driven sum.

`config.loss.name` names registered loss terms (`segjax.registry`, kind
"loss"), one or several joined by '+'; a new paper adds a loss with
`@register("loss", name)` in its own module, listed in `config.imports`.

Shapes: logits (N, *spatial, K) in any float dtype, labels int (N, *spatial);
2D and 3D alike. Every loss accumulates in float32 (bf16 logits are upcast
before the softmax) and is jit-able.

Which pixels count: a pixel contributes only if its label is in [0, K) and is
not `ignore_index`. Out-of-range labels cannot raise inside `jit`, so they are
skipped here too; `segjax.metrics.validate_labels` checks them on the host.
A batch with no valid pixel gives a loss of 0 (PyTorch gives NaN), so a
crop that is all void does not poison training.

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
from segjax.registry import register
from segjax.ops.resize import center_crop


def valid_mask(labels: jax.Array, num_classes: int, ignore_index: int | None) -> jax.Array:
    """True where a label counts: in [0, num_classes) and not `ignore_index`."""
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    return valid


def _check_shapes(fn: str, logits: jax.Array, labels: jax.Array, what: str = "labels"):
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"{fn}: logits {logits.shape} (N, *spatial, K) do not match {what} {labels.shape} "
            f"(N, *spatial); crop larger {what} with center_crop_labels first")


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
    _check_shapes("cross_entropy", logits, labels)
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


def soft_dice_loss(logits: jax.Array, labels: jax.Array, *, num_classes: int,
                   ignore_index: int | None = 255, smooth: float = 1.0,
                   batch: bool = True, include_background: bool = True) -> jax.Array:
    """1 - mean over classes of the soft Dice of softmax probabilities vs one-hot labels.

    Dice_k = (2 sum_i p_ik t_ik + smooth) / (sum_i p_ik + sum_i t_ik + smooth).
    `batch=True` sums over the whole batch (one Dice per class: the batch is one
    pseudo-volume, No New-Net's multi-class Dice and nnU-Net's "batch Dice");
    `batch=False` takes one Dice per image and class and averages them.
    `include_background=False` leaves class 0 out of the mean (nnU-Net's
    default). With `smooth=0` (the paper's formula) a class absent from both
    the labels and the prediction counts as Dice 1. Ignored pixels are left
    out of both the probabilities and the targets.
    """
    _check_shapes("soft_dice_loss", logits, labels)
    if logits.shape[-1] != num_classes:
        raise ValueError(f"soft_dice_loss: logits have {logits.shape[-1]} classes, "
                         f"num_classes={num_classes}")
    if not include_background and num_classes < 2:
        raise ValueError("soft_dice_loss: include_background=False needs at least 2 classes")
    valid = valid_mask(labels, num_classes, ignore_index)[..., None].astype(jnp.float32)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * valid
    target = jax.nn.one_hot(jnp.where(valid[..., 0] > 0, labels, 0), num_classes) * valid
    sum_axes = tuple(range(0 if batch else 1, logits.ndim - 1))
    intersection = jnp.sum(probs * target, axis=sum_axes)
    total = jnp.sum(probs, axis=sum_axes) + jnp.sum(target, axis=sum_axes)
    dice = jnp.where(total + smooth > 0,
                     (2.0 * intersection + smooth) / jnp.where(total + smooth > 0,
                                                               total + smooth, 1.0), 1.0)
    if not include_background:
        dice = dice[..., 1:]
    return 1.0 - jnp.mean(dice)


def center_crop_labels(labels_or_weights: jax.Array, logits: jax.Array) -> jax.Array:
    """Crops (N, *spatial) labels or weights to the spatial size of (N, *spatial', K) logits.

    For valid-convolution models whose output is smaller than their input
    (572 -> 388 in the U-Net paper). Equal sizes pass through unchanged.
    """
    target = tuple(logits.shape[1:-1])
    spatial = tuple(labels_or_weights.shape[1:])
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


def _dice_options(config) -> dict:
    """config.loss.dice (smooth, batch, include_background); configs without it get the defaults."""
    options = config.get("dice") if hasattr(config, "get") else None
    options = dict(options.to_dict() if hasattr(options, "to_dict") else options or {})
    unknown = sorted(set(options) - {"smooth", "batch", "include_background"})
    if unknown:
        raise KeyError(f"config.loss.dice has unknown field(s) {unknown}; valid: smooth, batch, "
                       "include_background")
    return {"smooth": float(options.get("smooth", 1.0)),
            "batch": bool(options.get("batch", True)),
            "include_background": bool(options.get("include_background", True))}


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
