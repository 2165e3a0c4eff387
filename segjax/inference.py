"""Inference: sliding-window prediction of whole images (overlap-tile for valid convs).

`sliding_window_predict(predict_fn, image, tile=...)` covers an image of any
size with tiles, runs them through `predict_fn` in batches and stitches the
class probabilities. A model whose logits are smaller than its input (the
valid-convolution U-Net) is handled as the U-Net paper's overlap-tile
strategy: the output of a tile is aligned with the tile's centre, and the
image is mirrored at its borders so that every pixel gets full context.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile`, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def output_margin(predict_fn: Callable, tile: Sequence[int], channels: int) -> tuple[int, ...]:
    """Per-axis context the model consumes: (input tile - output tile) / 2."""
    probe = np.zeros((1, *tile, channels), np.float32)
    out_shape = np.asarray(predict_fn(probe)).shape[1:-1]
    margins = []
    for size_in, size_out in zip(tile, out_shape):
        if (size_in - size_out) % 2:
            raise ValueError(f"model output {out_shape} is not centred in its input {tuple(tile)}")
        margins.append((size_in - size_out) // 2)
    return tuple(margins)


def sliding_window_predict(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *,
                           tile: Sequence[int] | None = None, overlap: float = 0.0,
                           batch_size: int = 1, num_classes: int | None = None) -> np.ndarray:
    """Class probabilities (H, W, K) for a normalised image (H, W, C).

    `predict_fn` maps a batch of tiles (B, *tile, C) to logits (B, *out, K); out
    may be smaller than tile (valid convolutions), centred. `overlap` is the
    fraction of the output tile shared by neighbouring tiles; overlapping
    probabilities are averaged. `tile=None` predicts the whole image at once.
    """
    spatial = image.shape[:-1]
    if tile is None or len(tile) == 0:
        logits = np.asarray(predict_fn(image[None]))[0]
        return _softmax(logits)
    tile = tuple(int(t) for t in tile)
    margins = output_margin(predict_fn, tile, image.shape[-1])
    out_tile = tuple(t - 2 * m for t, m in zip(tile, margins))
    # Mirror the image so that every output pixel has full context and the
    # image is at least one output tile large.
    pads = [(m, m + max(0, o - s)) for m, o, s in zip(margins, out_tile, spatial)]
    padded = np.pad(image, pads + [(0, 0)], mode="reflect" if all(
        p[1] < s for p, s in zip(pads, spatial)) else "symmetric")
    covered = tuple(max(s, o) for s, o in zip(spatial, out_tile))
    strides = [max(1, int(o * (1 - overlap))) for o in out_tile]
    grids = [_tile_starts(c, o, st) for c, o, st in zip(covered, out_tile, strides)]
    starts = [tuple(s) for s in np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, len(tile))]
    total = None
    counts = np.zeros(covered, np.float32)
    for first in range(0, len(starts), batch_size):
        chunk = starts[first:first + batch_size]
        tiles = np.stack([padded[tuple(slice(s, s + t) for s, t in zip(start, tile))]
                          for start in chunk])
        probs = _softmax(np.asarray(predict_fn(tiles), np.float32))
        if total is None:
            total = np.zeros(covered + (probs.shape[-1],), np.float32)
        for start, prob in zip(chunk, probs):
            region = tuple(slice(s, s + o) for s, o in zip(start, out_tile))
            total[region] += prob
            counts[region] += 1
    result = total / counts[..., None]
    return result[tuple(slice(0, s) for s in spatial)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)
