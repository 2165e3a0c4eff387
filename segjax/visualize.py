"""What evaluation and prediction draw: class colours, overlays, label PNGs, the confusion matrix.

One set of pictures for every entry point (the train loop's validation
overlays, `segjax.predict`, `segjax.evaluate`):

- `class_colours(config)`: the dataset's colours (`classes.txt` in the data
  root: "value name R G B"), else a fixed palette of distinguishable colours;
- `overlay`: class colours blended over the image;
- `overlay_panel`: [image | overlay | errors in red] for a labelled example
  (of a volume: its middle section, `middle_section`);
- `label_png`: a palette PNG whose pixel values are the class indices;
  `mask_png`: one channel of a sigmoid head's masks as a 0/255 PNG;
- `panoptic_colours` / `id_png`: panoptic maps with instance colours over the
  class palette, and panoptic ids as an RGB-encoded PNG;
- `plot_confusion`: the row-normalised confusion matrix as a PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

_BASE_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
     [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
     [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128]], np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """A fixed, distinguishable RGB colour per class (uint8, (K, 3))."""
    reps = -(-num_classes // len(_BASE_PALETTE))
    return np.tile(_BASE_PALETTE, (reps, 1))[:num_classes]


def _classes_table(root: Path) -> dict[int, list[int]]:
    table = root / "classes.txt"
    colours = {}
    if table.is_file():
        for line in table.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 5 and not line.lstrip().startswith("#"):
                try:
                    colours[int(fields[0])] = [int(v) for v in fields[-3:]]
                except ValueError:
                    continue
    return colours


def class_colours(config) -> np.ndarray:
    """(K, 3) uint8 colours: the dataset's classes.txt ("value name R G B") or `palette`."""
    num_classes = int(config.model.num_classes)
    data = config.get("data") or {}
    raw_values = tuple(int(v) for v in data.get("label_values", ())) or tuple(range(num_classes))
    colours = _classes_table(Path(str(data.get("root", ""))))
    if len(raw_values) == num_classes and all(value in colours for value in raw_values):
        return np.array([colours[value] for value in raw_values], np.uint8)
    return palette(num_classes)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def is_channel_stack(image: np.ndarray, prediction: np.ndarray) -> bool:
    """True when `prediction` is a (*spatial, K) stack of masks (a sigmoid head's) for `image`
    (*spatial, C), False for a class-index map (*spatial)."""
    return np.ndim(prediction) == np.ndim(image)


def _stack_colour(masks: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean colour of the positive channels, True where any channel is positive)."""
    positive = masks > 0
    count = positive.sum(axis=-1, keepdims=True).astype(np.float32)
    colour = positive.astype(np.float32) @ colours[:positive.shape[-1]].astype(np.float32)
    return colour / np.maximum(count, 1.0), count > 0


def overlay(image: np.ndarray, prediction: np.ndarray, colours: np.ndarray,
            alpha: float = 0.5, rows_per_block: int = 512) -> np.ndarray:
    """uint8 RGB: (1 - alpha) * image + alpha * class colour.

    A channel stack (`is_channel_stack`) colours each pixel by the mean colour of
    its positive channels and leaves pixels with none as they are. Blended in
    blocks of rows, so that a large image needs no float copy of itself.
    """
    stack = is_channel_stack(image, prediction)
    result = np.empty((*np.shape(image)[:-1], 3), np.uint8)
    for top in range(0, result.shape[0], rows_per_block):
        rows = slice(top, top + rows_per_block)
        weight = alpha
        if stack:
            colour, positive = _stack_colour(prediction[rows], colours)
            weight = alpha * positive
        else:
            colour = colours[np.clip(prediction[rows], 0, len(colours) - 1)].astype(np.float32)
        blended = (1 - weight) * _rgb(image[rows]).astype(np.float32) + weight * colour
        result[rows] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return result


def middle_section(image: np.ndarray, prediction: np.ndarray, label: np.ndarray | None = None):
    """The middle depth section of a volume (D, H, W, C), its prediction and label, for 2D
    pictures: the image as uint8, min-max scaled over the section (volumes come in any
    intensity range)."""
    index = image.shape[0] // 2
    return (to_uint8(image[index]), prediction[index], None if label is None else label[index])


def to_uint8(section: np.ndarray) -> np.ndarray:
    """An image of any intensity range as uint8, min-max scaled (a constant one: zeros)."""
    section = np.asarray(section, np.float32)
    low, high = float(section.min()), float(section.max())
    scaled = (section - low) / (high - low) * 255.0 if high > low else np.zeros_like(section)
    return np.round(scaled).astype(np.uint8)


def overlay_panel(image: np.ndarray, prediction: np.ndarray, label: np.ndarray | None, *,
                  colours: np.ndarray, ignore_index: int) -> np.ndarray:
    """[image | prediction colours over the image | errors in red] as one uint8 RGB array
    (a volume (D, H, W, C): of its middle section). Channel-stack predictions and labels
    (sigmoid heads) mark a pixel wrong when any of its valid channels is."""
    if np.ndim(image) == 4:
        image, prediction, label = middle_section(image, prediction, label)
    rgb = _rgb(image)
    panels = [rgb, overlay(image, prediction, colours)]
    if label is not None:
        errors = (rgb * 0.4).astype(np.uint8)
        if is_channel_stack(image, prediction):   # a pixel is wrong if any valid channel is
            counted = (label == 0) | (label == 1)
            valid = counted.any(axis=-1)
            wrong = (counted & ((prediction > 0) != (label == 1))).any(axis=-1)
        else:
            valid = label != ignore_index
            wrong = valid & (prediction != label)
        errors[wrong] = (255, 0, 0)
        errors[valid & ~wrong] = (0.4 * rgb[valid & ~wrong] + 0.6 * 200).astype(np.uint8)
        panels.append(errors)
    return np.concatenate(panels, axis=1)


def mask_png(mask: np.ndarray) -> Image.Image:
    """A binary mask as an 8-bit PNG: 255 where positive, 0 elsewhere."""
    return Image.fromarray(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), mode="L")


def label_png(prediction: np.ndarray, colours: np.ndarray) -> Image.Image:
    """A palette PNG whose pixel values are the class indices."""
    image = Image.fromarray(prediction.astype(np.uint8, copy=False), mode="P")
    image.putpalette(colours.reshape(-1).tolist())
    return image


# Panoptic maps: stuff pixels take their class colour; each thing instance its class colour
# shifted by a fixed pseudo-random offset per instance id (an id keeps its colour across images
# and runs), outlined darker where instances meet, so touching instances of one class stay
# apart; void pixels are black.
_INSTANCE_SHIFT = 70


def instance_shifts(count: int) -> np.ndarray:
    """(count, 3) int colour offsets, row i for instance id i (row 0: no shift)."""
    shifts = np.random.default_rng(12345).integers(-_INSTANCE_SHIFT, _INSTANCE_SHIFT + 1,
                                                   (max(count, 1), 3))
    shifts[0] = 0
    return shifts


def instance_boundaries(instance: np.ndarray) -> np.ndarray:
    """(H, W) True on instance pixels whose right or lower neighbour has another id."""
    edge = np.zeros(instance.shape, bool)
    edge[:, :-1] |= instance[:, :-1] != instance[:, 1:]
    edge[:-1, :] |= instance[:-1, :] != instance[1:, :]
    return edge & (instance > 0)


def panoptic_colours(panoptic_class: np.ndarray, panoptic_instance: np.ndarray,
                     colours: np.ndarray, *, void_label: int = 255) -> np.ndarray:
    """uint8 (H, W, 3) colours of a panoptic map (class and instance id per pixel)."""
    classes, instance = np.asarray(panoptic_class), np.asarray(panoptic_instance)
    colours = np.asarray(colours, np.int64)
    void = (classes == void_label) | (classes < 0) | (classes >= len(colours))
    rgb = colours[np.where(void, 0, classes)]
    rgb = rgb + instance_shifts(int(instance.max(initial=0)) + 1)[np.maximum(instance, 0)]
    rgb[instance_boundaries(instance)] //= 2
    rgb[void] = 0
    return np.clip(rgb, 0, 255).astype(np.uint8)


def id_png(ids: np.ndarray) -> Image.Image:
    """An RGB PNG of non-negative integer ids below 2^24: id = R + 256 G + 256^2 B (COCO's
    panoptic encoding)."""
    ids = np.asarray(ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(f"id_png: ids must lie in [0, 2^24), got [{ids.min()}, {ids.max()}]")
    return Image.fromarray(np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)
                           .astype(np.uint8))


def example_stem(example: dict, index: int) -> str:
    return Path(str(example.get("name", index))).stem


def write_overlays(config, examples: Sequence[dict], predictions: Sequence[np.ndarray],
                   directory: Path) -> list[Path]:
    """One `overlay_panel` PNG per (example, prediction) pair, named by the example's stem
    (`directory`: a local path or a bucket's `etils.epath.Path`)."""
    directory.mkdir(parents=True, exist_ok=True)
    colours = class_colours(config)
    paths = []
    for index, (example, prediction) in enumerate(zip(examples, predictions)):
        panel = overlay_panel(example["image"], prediction, example.get("label"),
                              colours=colours, ignore_index=int(config.data.ignore_index))
        path = directory / f"{example_stem(example, index)}.png"
        encoded = io.BytesIO()  # one write: `directory` may be in a bucket (segjax.paths)
        Image.fromarray(panel).save(encoded, format="PNG")
        path.write_bytes(encoded.getvalue())
        paths.append(path)
    return paths


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Row-normalised confusion matrix as a PNG (rows: true class, columns: predicted)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    confusion = np.asarray(confusion, np.float64)
    rows = confusion.sum(1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    shown = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=90)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(class_names) <= 25:
        for (row, column), value in np.ndenumerate(normalised):
            axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                      color="white" if value > 0.5 else "black")
    figure.colorbar(shown, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
