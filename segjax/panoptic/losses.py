"""Panoptic-DeepLab's loss terms (Cheng et al. 2020, arXiv:1911.10194, sec. 3.3).

    L = 1 * bootstrapped_cross_entropy + 200 * center_mse + 0.01 * offset_l1

    config.loss.name = "bootstrapped_cross_entropy+center_mse+offset_l1"
    config.loss.weights = (1.0, 200.0, 0.01)

Each term is registered (kind "loss") and reads the model outputs 'logits',
'center' (N, H, W, 1) and 'offset' (N, H, W, 2) and the batch keys that
`segjax.data.panoptic` builds ('semantic_weight', 'center', 'center_weight',
'offset', 'offset_weight'). As deeplab2's losses:

- bootstrapped cross-entropy: per image, the pixel losses (cross-entropy
  times 'semantic_weight', which is 3 on the pixels of small instances, 0 on
  ignored pixels) are ranked and only the largest `config.loss.top_k_percent`
  (0.2) of the image's pixels are kept; their mean over the kept pixels with a
  non-zero loss, averaged over the batch.
- centre MSE: (heatmap - target)^2 times 'center_weight' (0 on ignored
  pixels), summed and divided by the number of weighted pixels, per image.
- offset L1: |offset - target| averaged over (dy, dx), times
  'offset_weight' (the thing pixels), summed and divided by the number of
  thing pixels, per image; an image without things contributes 0.

deeplab2 divides each image's sums by its pixels with a non-zero weighted
loss; here the divisor is the sum of the weights (a pixel predicted exactly
right still counts), which differs only on exact zeros.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from segjax.losses import valid_mask
from segjax.registry import register

TARGET_KEYS = {"center_mse": ("center", "center_weight"),
               "offset_l1": ("offset", "offset_weight")}


def _require(batch, term: str, keys) -> None:
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(f"loss {term}: the batch has no {missing}; panoptic targets come from a "
                       "panoptic source (data.source='panoptic_folder' or a panoptic tfds "
                       "dataset), see segjax.data.panoptic")


def _per_image_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """Mean over the batch of each image's sum(values) / sum(weights) (0 when no weight)."""
    axes = tuple(range(1, values.ndim))
    sums, counts = jnp.sum(values, axis=axes), jnp.sum(weights, axis=axes)
    return jnp.mean(jnp.where(counts > 0, sums / jnp.where(counts > 0, counts, 1.0), 0.0))


def bootstrapped_cross_entropy(logits: jax.Array, labels: jax.Array, *, top_k_percent: float,
                               ignore_index: int | None = 255,
                               pixel_weights: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy of each image's hardest `top_k_percent` pixels, over the batch."""
    if not 0.0 < top_k_percent <= 1.0:
        raise ValueError(f"config.loss.top_k_percent={top_k_percent}: expected a fraction in "
                         "(0, 1]")
    num_classes = logits.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_index)
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    loss = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0] * valid
    if pixel_weights is not None:
        loss = loss * pixel_weights.astype(jnp.float32)
    loss = loss.reshape(loss.shape[0], -1)
    k = max(1, int(round(top_k_percent * loss.shape[1])))
    if k < loss.shape[1]:
        loss = jax.lax.top_k(loss, k)[0]
    return _per_image_mean(loss, (loss != 0).astype(jnp.float32))


@register("loss", "bootstrapped_cross_entropy")
def bootstrapped_cross_entropy_term(outputs, batch, *, num_classes, ignore_index, config):
    """Cross-entropy of the hardest config.top_k_percent pixels, small instances weighted."""
    del num_classes
    return bootstrapped_cross_entropy(outputs["logits"], batch["label"],
                                      top_k_percent=float(config["top_k_percent"]),
                                      ignore_index=ignore_index,
                                      pixel_weights=batch.get("semantic_weight"))


@register("loss", "center_mse")
def center_mse_term(outputs, batch, *, num_classes, ignore_index, config):
    """Weighted mean squared error of the centre heatmap."""
    del num_classes, ignore_index, config
    _require(batch, "center_mse", TARGET_KEYS["center_mse"])
    weights = batch["center_weight"].astype(jnp.float32)
    error = (outputs["center"][..., 0].astype(jnp.float32) - batch["center"]) ** 2
    return _per_image_mean(error * weights, weights)


@register("loss", "offset_l1")
def offset_l1_term(outputs, batch, *, num_classes, ignore_index, config):
    """Weighted L1 error of the (dy, dx) offsets on thing pixels."""
    del num_classes, ignore_index, config
    _require(batch, "offset_l1", TARGET_KEYS["offset_l1"])
    weights = batch["offset_weight"].astype(jnp.float32)
    error = jnp.mean(jnp.abs(outputs["offset"].astype(jnp.float32) - batch["offset"]), axis=-1)
    return _per_image_mean(error * weights, weights)
