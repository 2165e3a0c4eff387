"""Inference: sliding-window prediction, multi-scale and flip test-time augmentation.

The one sliding window, `window_bands`, covers an image (H, W, C) or a volume
(D, H, W, C) of any size with tiles, runs them through `predict_fn` in
batches of a fixed shape (the last batch is padded, so the function is
compiled once) and stitches the class probabilities on the host in float32,
yielding bands along the first axis as soon as they are final, so the device
holds one batch of tiles and the host one band. Overlapping tiles are blended
by averaging or by a Gaussian weight that trusts tile centres more than tile
borders (nnU-Net's choice, sigma = tile / 8). `sliding_window_predict`
assembles the bands into a whole probability map; `predict_labels` (through
`stream_probabilities`) turns each band into labels at once.

A model whose logits are smaller than its input (the valid-convolution U-Net)
is handled as the U-Net paper's overlap-tile strategy: the output of a tile
is aligned with the tile's centre, and the image is mirrored at its borders
so that every pixel gets full context. Images smaller than a tile are
mirror-padded and cropped back.

`tta_predict` averages probabilities over scales (the image is resized, the
probabilities resized back) and horizontal flips, as DeepLab's multi-scale
inputs at test time. `segjax.evaluation.make_predict_fn(model, variables)`
turns any registered model into the `predict_fn` these functions take;
`predict_image` runs the whole test-time recipe of `config.eval`
(`segjax.config.EvalOptions`) on a raw image, including the dense CRF
(`segjax.ops.crf`). Probabilities are the softmax of the logits, or for a
sigmoid head (`config.model.head_activation`, multi-label and binary models)
one sigmoid per channel, averaged and blended the same way; `predict_labels`
then gives class indices (argmax) or, for a sigmoid head, a stack of K binary
masks (probability above the class's `config.eval.thresholds`). Resizing here
is a NumPy bilinear interpolation with half-pixel centres (PyTorch's
`align_corners=False`, `segjax.ops.resize.resize`), so whole images never
travel to the device.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from segjax.config import HEAD_ACTIVATIONS, EvalOptions
from segjax.data.normalization import normalize, normalizer
from segjax.ops import crf as crf_lib

BLENDS = ("average", "gaussian")


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile`, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def output_margin(predict_fn: Callable, tile: Sequence[int], channels: int,
                  batch_size: int = 1) -> tuple[int, ...]:
    """Per-axis context the model consumes: (input tile - output tile) / 2.

    Uses `predict_fn.output_shape` when it exists (`segjax.evaluation.make_predict_fn`);
    otherwise probes `predict_fn` once with a batch of zeros of the shape the
    sliding window will use, so no extra shape gets compiled.
    """
    input_shape = (batch_size, *tile, channels)
    shape_fn = getattr(predict_fn, "output_shape", None)
    if shape_fn is not None:
        out_shape = tuple(shape_fn(input_shape))[1:-1]
    else:
        out_shape = np.shape(predict_fn(np.zeros(input_shape, np.float32)))[1:-1]
    if len(out_shape) != len(tile):
        raise ValueError(f"model output has spatial shape {out_shape} for tile {tuple(tile)}: "
                         "expected one output axis per tile axis")
    margins = []
    for size_in, size_out in zip(tile, out_shape):
        if size_out > size_in or (size_in - size_out) % 2:
            raise ValueError(f"model output {out_shape} is not centred in its input {tuple(tile)}")
        margins.append((size_in - size_out) // 2)
    return tuple(margins)


def blend_weights(out_tile: Sequence[int], blend: str) -> np.ndarray:
    """Weight of each output-tile pixel when overlapping tiles are blended."""
    if blend not in BLENDS:
        raise ValueError(f"eval.blend must be one of {BLENDS}, got {blend!r}")
    if blend == "average":
        return np.ones(tuple(out_tile), np.float32)
    weights = np.ones((), np.float32)
    for size in out_tile:
        centre, sigma = (size - 1) / 2, size / 8
        axis = np.exp(-0.5 * ((np.arange(size) - centre) / sigma) ** 2)
        weights = np.multiply.outer(weights, axis)
    weights = weights / weights.max()
    # Pixels covered only by a tile border must keep a usable weight.
    return np.maximum(weights, 1e-3).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Window:
    """Where the tiles of a sliding window go over an image of `spatial` size.

    Tiles are read from the image mirrored by `pads` (so every output pixel has
    full context and the image is at least one output tile large); a tile at
    `start` covers padded positions [start, start + tile) and writes output
    positions [start, start + out_tile) of an output `covered` large, which is
    then cropped to `spatial`. `starts` are in raster order.
    """

    spatial: tuple[int, ...]
    tile: tuple[int, ...]
    out_tile: tuple[int, ...]
    margins: tuple[int, ...]
    covered: tuple[int, ...]
    grids: tuple[tuple[int, ...], ...]

    @property
    def pads(self) -> list[tuple[int, int]]:
        return [(m, m + c - s) for m, c, s in zip(self.margins, self.covered, self.spatial)]

    @property
    def starts(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in s) for s in
                np.stack(np.meshgrid(*self.grids, indexing="ij"), -1).reshape(-1, len(self.tile))]


def make_window(predict_fn: Callable, spatial: Sequence[int], channels: int,
                tile: Sequence[int], overlap: float, batch_size: int) -> Window:
    """The tiling of an image of `spatial` size (see `Window`)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"eval.overlap must be in [0, 1), got {overlap}")
    spatial, tile = tuple(int(s) for s in spatial), tuple(int(t) for t in tile)
    if len(tile) != len(spatial):
        raise ValueError(f"eval.tile {tile} has {len(tile)} axes; the image has "
                         f"{len(spatial)} spatial axes {spatial}")
    margins = output_margin(predict_fn, tile, channels, batch_size)
    out_tile = tuple(t - 2 * m for t, m in zip(tile, margins))
    covered = tuple(max(s, o) for s, o in zip(spatial, out_tile))
    strides = [max(1, int(o * (1 - overlap))) for o in out_tile]
    grids = tuple(tuple(_tile_starts(c, o, st)) for c, o, st in zip(covered, out_tile, strides))
    return Window(spatial, tile, out_tile, margins, covered, grids)


def sliding_window_predict(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *,
                           tile: Sequence[int] | None = None, overlap: float = 0.0,
                           batch_size: int = 1, num_classes: int | None = None,
                           blend: str = "average", activation: str = "softmax") -> np.ndarray:
    """Class probabilities (*spatial, K), float32, for a normalised image (*spatial, C).

    `predict_fn` maps a batch of tiles (batch_size, *tile, C) to logits
    (batch_size, *out, K); out may be smaller than tile (valid convolutions),
    centred. Every call gets exactly `batch_size` tiles. `overlap` is the
    fraction of the output tile shared by neighbouring tiles. `tile=None` (or
    empty) predicts the whole image at once. `activation`: softmax over the classes, or a
    sigmoid per channel.
    """
    image = np.asarray(image, np.float32)
    spatial = image.shape[:-1]
    if tile is None or len(tile) == 0:
        logits = np.asarray(predict_fn(image[None]), np.float32)[0]
        if logits.shape[:-1] != spatial:
            raise ValueError(f"model output {logits.shape[:-1]} differs from its input {spatial} "
                             "(valid convolutions?): set eval.tile to use overlap-tile")
        return _check_classes(activate(logits, activation), num_classes)
    window = make_window(predict_fn, spatial, image.shape[-1], tile, overlap, batch_size)
    probs = None
    for start, stop, band in window_bands(predict_fn, window, lambda part: part, image,
                                          batch_size=batch_size, blend=blend,
                                          num_classes=num_classes, activation=activation):
        if probs is None:
            probs = np.empty((*spatial, band.shape[-1]), np.float32)
        probs[start:stop] = band
    return probs


def tta_predict(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, *,
                scales: Sequence[float] = (1.0,), flip: bool = False,
                **window) -> np.ndarray:
    """Probabilities averaged over `scales` and (with `flip`) horizontal flips.

    Each scaled (and flipped) image is predicted with `sliding_window_predict`
    (`window`: tile, overlap, batch_size, num_classes, blend), its
    probabilities un-flipped and resized back to the image size.
    """
    image = np.asarray(image, np.float32)
    spatial = image.shape[:-1]
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"eval.scales must be positive, got {tuple(scales)}")
    total = None
    for scale in scales:
        size = tuple(max(1, int(round(s * scale))) for s in spatial)
        scaled = resize_linear(image, size)
        for flipped in ((False, True) if flip else (False,)):
            view = np.flip(scaled, axis=-2) if flipped else scaled
            probs = sliding_window_predict(predict_fn, view, **window)
            if flipped:
                probs = np.flip(probs, axis=-2)
            probs = resize_linear(probs, spatial)
            total = probs.copy() if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


def predict_probs(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  options: EvalOptions, num_classes: int | None = None) -> np.ndarray:
    """Probabilities for one normalised image with the sliding-window and TTA options (the
    CRF, which needs the raw image, is applied by `predict_image`)."""
    return tta_predict(predict_fn, image, scales=options.scales, flip=options.flip,
                       tile=options.tile or None, overlap=options.overlap,
                       batch_size=options.batch_size, blend=options.blend,
                       num_classes=num_classes, activation=options.activation)


def predict_image(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  data_config, options: EvalOptions,
                  num_classes: int | None = None) -> np.ndarray:
    """Probabilities (*spatial, K) for a raw uint8 image: normalise, predict (TTA), CRF."""
    probs = predict_probs(predict_fn, normalize(image, data_config), options,
                          num_classes)
    if options.crf:
        if image.ndim != 3:
            raise ValueError(f"eval.crf works on 2D images (H, W, C); got shape {image.shape}")
        probs = crf_lib.dense_crf(image, probs, options.crf_params)
    return probs


def predict_labels(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                   data_config, options: EvalOptions, num_classes: int, *,
                   probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Class indices (*spatial) of a raw uint8 image, and float16 probabilities if asked.

    The result equals `argmax(predict_image(...))`; for a sigmoid head it is
    a uint8 (*spatial, K) stack of 0/1 masks, `predict_image(...) > thresholds`.
    With a sliding window at scale 1 and no CRF (flip allowed) it is computed
    in bands along the first axis (`stream_probabilities`): host memory stays
    at the tile batch, one band of tile rows and the outputs (uint8 labels for
    up to 256 classes), however large the image. Other options need whole
    probability maps.
    """
    image = np.asarray(image)
    label_dtype = np.uint8 if num_classes <= 256 else np.int32

    def decide(probs):
        if options.activation == "sigmoid":
            return (probs > options.class_thresholds(num_classes)).astype(np.uint8)
        return np.argmax(probs, axis=-1).astype(label_dtype)

    if not options.tile or options.crf or tuple(options.scales) != (1.0,):
        probs = predict_image(predict_fn, image, data_config, options, num_classes)
        return decide(probs), probs.astype(np.float16) if probabilities else None
    spatial = image.shape[:-1]
    labels = np.empty(spatial + ((num_classes,) if options.activation == "sigmoid" else ()),
                      np.uint8 if options.activation == "sigmoid" else label_dtype)
    probs_out = np.empty((*spatial, num_classes), np.float16) if probabilities else None
    for start, stop, band in stream_probabilities(predict_fn, image, data_config, options,
                                                  num_classes):
        labels[start:stop] = decide(band)
        if probs_out is not None:
            probs_out[start:stop] = band
    return labels, probs_out


def stream_probabilities(predict_fn, image: np.ndarray, data_config, options: EvalOptions,
                         num_classes: int):
    """Yields (start, stop, probabilities of positions start..stop-1 along axis 0), in order.

    The same arithmetic as `tta_predict` at scale 1 (with or without flip) on
    the normalised image, in bands (`window_bands`): tiles are normalised as
    they are read, with the whole image's statistics (`normalizer`). The
    flipped pass runs over a flipped view of the image, whose tile rows are the
    same, and its bands are un-flipped and averaged with the plain ones.
    """
    window = make_window(predict_fn, image.shape[:-1], image.shape[-1], options.tile,
                         options.overlap, options.batch_size)
    normalize_part = normalizer(image, data_config)
    views = [image, np.flip(image, axis=-2)] if options.flip else [image]
    passes = [window_bands(predict_fn, window, normalize_part, view,
                           batch_size=options.batch_size, blend=options.blend,
                           num_classes=num_classes, activation=options.activation)
              for view in views]
    for bands in zip(*passes):
        start, stop, total = bands[0]
        if options.flip:
            total = total + np.flip(bands[1][2], axis=-2)
        yield start, stop, total / (2 if options.flip else 1)


def _reflect(indices: np.ndarray, length: int) -> np.ndarray:
    """np.pad(mode='reflect')'s source index of each (possibly out-of-range) position."""
    if length == 1:
        return np.zeros_like(indices)
    period = 2 * (length - 1)
    folded = np.mod(indices, period)
    return np.where(folded >= length, period - folded, folded)


def _read_tile(image: np.ndarray, start: Sequence[int], window: Window) -> np.ndarray:
    """The tile at padded position `start`, read through the mirror (no padded copy)."""
    axes = [_reflect(np.arange(s - m, s - m + t), n)
            for s, m, t, n in zip(start, window.margins, window.tile, window.spatial)]
    return image[np.ix_(*axes)]


def window_bands(predict_fn, window: Window, normalize_part: Callable[[np.ndarray], np.ndarray],
                 image: np.ndarray, *, batch_size: int, blend: str,
                 num_classes: int | None, activation: str = "softmax"):
    """The sliding window over `image`: yields (start, stop, probabilities of rows start..stop-1
    along axis 0), in order, each band as soon as every tile covering it is done.

    Tiles are read through the image's mirror (`window.pads`), normalised by
    `normalize_part`, predicted `batch_size` at a time (the last batch padded)
    and blended by `blend` weights into a band one output tile deep; host
    memory stays at the tile batch and that band, however large the image.
    """
    weights = blend_weights(window.out_tile, blend)
    rows, depth = window.grids[0], window.out_tile[0]
    remaining = {row: 0 for row in rows}
    starts = window.starts
    for start in starts:
        remaining[start[0]] += 1
    band = band_weight = None
    band_start, row_index = 0, 0
    for first in range(0, len(starts), batch_size):
        chunk = starts[first:first + batch_size]
        tiles = np.zeros((batch_size, *window.tile, image.shape[-1]), np.float32)
        for index, start in enumerate(chunk):
            tiles[index] = normalize_part(_read_tile(image, start, window))
        probs = _check_classes(
            activate(np.asarray(predict_fn(tiles), np.float32)[:len(chunk)], activation),
            num_classes)
        if band is None:
            band = np.zeros((depth, *window.covered[1:], probs.shape[-1]), np.float32)
            band_weight = np.zeros((depth, *window.covered[1:]), np.float32)
        for start, prob in zip(chunk, probs):
            region = (slice(start[0] - band_start, start[0] - band_start + depth),
                      *(slice(s, s + o) for s, o in zip(start[1:], window.out_tile[1:])))
            band[region] += prob * weights[..., None]
            band_weight[region] += weights
            remaining[start[0]] -= 1
            while row_index < len(rows) and remaining[rows[row_index]] == 0:
                row_index += 1
                stop = rows[row_index] if row_index < len(rows) else window.covered[0]
                count = stop - band_start
                final = band[:count] / band_weight[:count, ..., None]
                inside = min(stop, window.spatial[0]) - band_start
                if inside > 0:
                    yield band_start, band_start + inside, final[
                        (slice(0, inside), *(slice(0, n) for n in window.spatial[1:]))]
                band[:depth - count] = band[count:]
                band_weight[:depth - count] = band_weight[count:]
                band[depth - count:], band_weight[depth - count:] = 0.0, 0.0
                band_start = stop


def resize_linear(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(Bi/tri)linear resize of the leading spatial axes of (*spatial, C), half-pixel centres."""
    size = tuple(int(s) for s in size)
    for axis, target in enumerate(size):
        length = array.shape[axis]
        if length == target:
            continue
        coords = (np.arange(target) + 0.5) * (length / target) - 0.5
        coords = np.clip(coords, 0, length - 1)
        low = np.floor(coords).astype(np.int64)
        high = np.minimum(low + 1, length - 1)
        frac = (coords - low).astype(np.float32)
        shape = [1] * array.ndim
        shape[axis] = target
        frac = frac.reshape(shape)
        array = (np.take(array, low, axis=axis) * (1 - frac)
                 + np.take(array, high, axis=axis) * frac)
    return np.asarray(array, np.float32)


def _check_classes(probs: np.ndarray, num_classes: int | None) -> np.ndarray:
    if num_classes is not None and probs.shape[-1] != num_classes:
        raise ValueError(f"model gives {probs.shape[-1]} classes, expected "
                         f"num_classes={num_classes}")
    return probs


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def activate(logits: np.ndarray, activation: str = "softmax") -> np.ndarray:
    """Probabilities of logits (..., K): softmax over K, or a sigmoid per channel."""
    if activation == "sigmoid":
        return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
    if activation != "softmax":
        raise ValueError(f"activation must be one of {HEAD_ACTIVATIONS}, got {activation!r}")
    return _softmax(logits)
