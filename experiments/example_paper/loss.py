"""A new loss in its own file: the generalised Dice loss (Sudre et al. 2017, arXiv:1707.03237).

    GDL = 1 - 2 sum_k w_k sum_i p_ik t_ik / sum_k w_k sum_i (p_ik + t_ik)

over the valid pixels (labels in [0, K) and not ignore_index) of the whole
batch, with class weights w_k = 1 / (sum_i t_ik)^2 when
`config.loss.gdl_weighting` is "square" (the paper's), 1 / sum_i t_ik for
"simple", 1 for "uniform"; a class absent from the labels weighs 0. It
registers as a loss term, so `config.loss.name = "generalized_dice"` or
`"generalized_dice+cross_entropy"` picks it once this module is in
`config.imports`; nothing in segjax/ names it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from segjax.losses import valid_mask
from segjax.registry import register

WEIGHTINGS = {"square": 2.0, "simple": 1.0, "uniform": 0.0}


def generalized_dice_loss(logits: jax.Array, labels: jax.Array, *, weighting: str,
                          ignore_index: int | None) -> jax.Array:
    """The GDL of (N, *spatial, K) logits and (N, *spatial) labels over the batch."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"config.loss.gdl_weighting={weighting!r}: expected one of "
                         f"{', '.join(WEIGHTINGS)}")
    num_classes = logits.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_index)[..., None].astype(jnp.float32)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * valid
    target = jax.nn.one_hot(jnp.where(valid[..., 0] > 0, labels, 0), num_classes) * valid
    axes = tuple(range(logits.ndim - 1))
    count = jnp.sum(target, axis=axes)
    weight = jnp.where(count > 0, jnp.maximum(count, 1.0) ** -WEIGHTINGS[weighting], 0.0)
    overlap = jnp.sum(weight * jnp.sum(probs * target, axis=axes))
    total = jnp.sum(weight * (jnp.sum(probs, axis=axes) + count))
    return jnp.where(total > 0, 1.0 - 2.0 * overlap / jnp.where(total > 0, total, 1.0), 0.0)


@register("loss", "generalized_dice")
def generalized_dice_term(outputs, batch, *, num_classes, ignore_index, config):
    del num_classes
    return generalized_dice_loss(outputs["logits"], batch["label"],
                                 weighting=str(config.gdl_weighting), ignore_index=ignore_index)
