"""Panoptic-DeepLab's post-processing on the device (Cheng et al. 2020, arXiv:1911.10194, sec. 3.4).

From a model's outputs to instance and panoptic maps, with static shapes so
the whole of it is one `jax.jit` (`make_postprocess`):

1. semantic = argmax of the logits;
2. centres: the heatmap below `center_threshold` (0.1) is zeroed, a
   `nms_kernel` x `nms_kernel` (7) max pooling keeps the local maxima, and the
   `top_k` (200) highest survive (fewer when fewer are above the threshold);
3. grouping: each thing pixel (semantic class in `thing_classes`) moves by
   its predicted offset and joins the nearest centre; instance ids are the
   centres' ranks + 1 (0 on stuff pixels, and on thing pixels when no
   centre was found);
4. class of an instance: the majority vote of the semantic classes of its
   thing pixels;
5. stuff: a stuff class whose pixels (outside instances) number fewer than
   `stuff_area` becomes void.

Output maps (N, H, W) int32: "semantic", "instance", "panoptic_class" (the
instance's voted class on thing pixels, the semantic class on stuff pixels,
`void_label` where step 5 or 3 left none) and "panoptic_instance" (the
instance id on thing pixels, else 0); "panoptic" = panoptic_class *
label_divisor + panoptic_instance (void: void_label * label_divisor); and
"center_peaks" (N, H, W) float32, the kept centre scores.

Follows deeplab2's `model/post_processor/panoptic_deeplab.py`, including its
zero padding in the max pooling and its nearest-centre grouping; one
difference: with more than `top_k` candidates deeplab2 keeps every centre
scoring above the k-th score (so ties can keep fewer), here exactly the
`top_k` best (ties broken by position).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from segjax.config import EvalOptions


def thing_mask(thing_classes: Sequence[int], num_classes: int) -> np.ndarray:
    """(K,) bool, True for the thing classes; an error for a class outside [0, K)."""
    mask = np.zeros((num_classes,), bool)
    for thing in thing_classes:
        if not 0 <= int(thing) < num_classes:
            raise ValueError(f"config.data.panoptic.thing_classes: class {thing} is outside "
                             f"[0, {num_classes})")
        mask[int(thing)] = True
    return mask


def find_centers(heatmap: jax.Array, *, threshold: float, nms_kernel: int, top_k: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(H, W) heatmap -> (scores (K,), rows (K,), cols (K,)) of the top-k local maxima.

    Scores of empty slots are 0 (fewer than K maxima above the threshold).
    """
    height, width = heatmap.shape
    heat = jnp.where(heatmap > threshold, heatmap, 0.0)
    pad = nms_kernel // 2
    pooled = jax.lax.reduce_window(heat, 0.0, jax.lax.max, (nms_kernel, nms_kernel), (1, 1),
                                   ((pad, pad), (pad, pad)))
    peaks = jnp.where((pooled == heat) & (heat > 0), heat, 0.0)
    k = min(top_k, height * width)
    scores, index = jax.lax.top_k(peaks.reshape(-1), k)
    return scores, index // width, index % width


def group_pixels(offset: jax.Array, rows: jax.Array, cols: jax.Array, valid: jax.Array
                 ) -> jax.Array:
    """(H, W) index of the centre nearest to pixel + offset, over the `valid` centres."""
    height, width = offset.shape[:2]
    grid_rows, grid_cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    target_rows = grid_rows + offset[..., 0]
    target_cols = grid_cols + offset[..., 1]
    distance = ((target_rows[..., None] - rows.astype(offset.dtype)) ** 2
                + (target_cols[..., None] - cols.astype(offset.dtype)) ** 2)
    distance = jnp.where(valid, distance, jnp.inf)
    return jnp.argmin(distance, axis=-1)


def _majority_classes(semantic, instance, is_thing, num_classes: int, num_instances: int):
    """(num_instances + 1,) the most frequent thing class of each instance's thing pixels."""
    votes = jnp.where(is_thing[semantic] & (instance > 0), instance * num_classes + semantic, -1)
    counts = jnp.zeros(((num_instances + 1) * num_classes,), jnp.int32)
    counts = counts.at[votes.reshape(-1)].add(1, mode="drop")
    return jnp.argmax(counts.reshape(num_instances + 1, num_classes), axis=-1)


def postprocess_one(logits: jax.Array, center: jax.Array, offset: jax.Array, *,
                    thing_classes: Sequence[int], center_threshold: float = 0.1,
                    nms_kernel: int = 7, top_k: int = 200, stuff_area: int = 2048,
                    void_label: int = 255, label_divisor: int = 1000) -> dict[str, jax.Array]:
    """One image: logits (H, W, K), centre (H, W) or (H, W, 1), offset (H, W, 2) -> maps."""
    num_classes = logits.shape[-1]
    center = center.reshape(center.shape[:2]).astype(jnp.float32)
    offset = offset.astype(jnp.float32)
    semantic = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    is_thing = jnp.asarray(thing_mask(thing_classes, num_classes))

    scores, rows, cols = find_centers(center, threshold=center_threshold,
                                      nms_kernel=nms_kernel, top_k=top_k)
    valid = scores > 0
    nearest = group_pixels(offset, rows, cols, valid)
    thing_pixel = is_thing[semantic]
    instance = jnp.where(thing_pixel & jnp.any(valid), nearest + 1, 0).astype(jnp.int32)

    majority = _majority_classes(semantic, instance, is_thing, num_classes, scores.shape[0])
    stuff_pixel = ~thing_pixel
    stuff_counts = jnp.zeros((num_classes,), jnp.int32).at[semantic.reshape(-1)].add(
        stuff_pixel.reshape(-1).astype(jnp.int32))
    stuff_kept = stuff_pixel & (stuff_counts[semantic] >= stuff_area)
    panoptic_class = jnp.where(instance > 0, majority[instance],
                               jnp.where(stuff_kept, semantic, void_label)).astype(jnp.int32)
    panoptic_instance = jnp.where(instance > 0, instance, 0).astype(jnp.int32)
    peaks = jnp.zeros(center.shape, jnp.float32).at[rows, cols].max(jnp.where(valid, scores, 0))
    return {"semantic": semantic, "instance": instance, "panoptic_class": panoptic_class,
            "panoptic_instance": panoptic_instance,
            "panoptic": panoptic_class * label_divisor + panoptic_instance,
            "center_peaks": peaks}


def postprocess(logits: jax.Array, center: jax.Array, offset: jax.Array, **options
                ) -> dict[str, jax.Array]:
    """A batch: logits (N, H, W, K), centre (N, H, W, 1), offset (N, H, W, 2) -> (N, H, W) maps."""
    return jax.vmap(functools.partial(postprocess_one, **options))(logits, center, offset)


def options_from_config(config) -> dict:
    """postprocess keywords from config.eval.panoptic, data.panoptic and data.ignore_index."""
    panoptic = EvalOptions.from_config(config).panoptic
    return dict(thing_classes=tuple(int(c) for c in config.data.panoptic.thing_classes),
                center_threshold=float(panoptic.center_threshold),
                nms_kernel=int(panoptic.nms_kernel), top_k=int(panoptic.top_k),
                stuff_area=int(panoptic.stuff_area), void_label=int(config.data.ignore_index),
                label_divisor=int(panoptic.label_divisor))


def check_options(options: dict) -> None:
    """ValueErrors naming config.eval.panoptic's field for values out of range."""
    if int(options.get("nms_kernel", 7)) % 2 == 0 or int(options.get("nms_kernel", 7)) < 1:
        raise ValueError(f"config.eval.panoptic.nms_kernel={options['nms_kernel']}: expected an "
                         "odd window")
    if int(options.get("top_k", 200)) < 1:
        raise ValueError(f"config.eval.panoptic.top_k={options['top_k']}: expected >= 1")


def make_postprocess(**options):
    """`postprocess` with `options` fixed, jit-compiled: (logits, center, offset) -> maps."""
    check_options(options)
    return jax.jit(functools.partial(postprocess, **options))

