"""A new loss in its own file: the focal loss (Lin et al. 2017, arXiv:1708.02002).

    FL(p_t) = -(1 - p_t)^gamma * log(p_t)

averaged over the valid pixels (labels in [0, K) and not ignore_index), with
`config.loss.focal_gamma` (gamma = 0 is the cross-entropy). It registers as a
loss term, so `config.loss.name = "focal"` or `"focal+dice"` picks it once
this module is in `config.imports`; nothing in segjax/ names it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from segjax.losses import valid_mask
from segjax.registry import register


def focal_loss(logits: jax.Array, labels: jax.Array, *, gamma: float,
               ignore_index: int | None) -> jax.Array:
    """Mean focal loss over valid pixels of (N, *spatial, K) logits and (N, *spatial) labels."""
    num_classes = logits.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_index)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    safe = jnp.where(valid, labels, 0)
    log_pt = jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    per_pixel = -((1.0 - jnp.exp(log_pt)) ** gamma) * log_pt
    count = jnp.sum(valid)
    return jnp.where(count > 0, jnp.sum(jnp.where(valid, per_pixel, 0.0)) / jnp.maximum(count, 1),
                     0.0)


@register("loss", "focal")
def focal_term(outputs, batch, *, num_classes, ignore_index, config):
    del num_classes
    return focal_loss(outputs["logits"], batch["label"], gamma=float(config.focal_gamma),
                      ignore_index=ignore_index)
