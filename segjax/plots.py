"""Figures a person would rather look at than read: overlays, curves, per-class IoU, volumes.

The Colab notebooks (`colab/`) show these; a script saves them with
`figure.savefig(path)`. Every function returns a matplotlib Figure and shows
or saves nothing itself. Class colours, overlays and panoptic colours are
`segjax.visualize`'s, so a figure shows what the PNGs of `segjax.predict`,
`segjax.evaluate` and the train loop show.

- `overlay_grid`: one row per example: image | prediction over it | errors in red
  (a volume: its middle section), with a legend of the class colours;
- `training_curves`: the scalars of a run's metrics.jsonl records against the step;
- `compare_runs`: one line per run for each scalar, and the runs' final values as bars;
- `per_class_iou`: a bar per class of an evaluation result;
- `volume_sections`: evenly spaced sections of a volume, its prediction and label;
- `orthogonal_views`: the three planes through a volume's centre, prediction overlaid;
- `class_voxels`: the voxels of one class of a 3D prediction, drawn in 3D;
- `panoptic_grid`: image | predicted panoptic map | ground-truth panoptic map.

matplotlib is imported when a figure is made, never on `import segjax`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from segjax import visualize


def _figure(rows: int, columns: int, *, size: float = 3.0, **kwargs):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows),
                                squeeze=False, **kwargs)
    plt.close(figure)  # returned, not left open in pyplot's list (a notebook shows it once)
    return figure, axes


def _legend(figure, colours: np.ndarray, class_names: Sequence[str] | None) -> None:
    if not class_names:
        return
    from matplotlib.patches import Patch  # pylint: disable=import-outside-toplevel
    handles = [Patch(facecolor=np.asarray(colour) / 255.0, edgecolor="black", label=name)
               for colour, name in zip(colours, class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6),
                  frameon=False, bbox_to_anchor=(0.5, 0.0))


def _hide_ticks(axes) -> None:
    for axis in np.ravel(axes):
        axis.set_xticks([])
        axis.set_yticks([])


def overlay_grid(examples: Sequence[Mapping], predictions: Sequence[np.ndarray], *,
                 colours: np.ndarray, ignore_index: int = 255,
                 class_names: Sequence[str] | None = None, max_rows: int = 4):
    """One row per (example, prediction): image | prediction overlaid | errors in red.

    The panels are `segjax.visualize.overlay_panel`'s; examples without a label
    get two columns. Examples are dicts with 'image' (H, W, C) or (D, H, W, C)
    uint8, optionally 'label' and 'name'.
    """
    pairs = list(zip(examples, predictions))[:max_rows]
    if not pairs:
        raise ValueError("overlay_grid: no (example, prediction) pairs to show")
    labelled = any(example.get("label") is not None for example, _ in pairs)
    columns = 3 if labelled else 2
    figure, axes = _figure(len(pairs), columns, size=3.2)
    titles = ["image", "prediction", "errors (red)"]
    for row, (example, prediction) in enumerate(pairs):
        panel = visualize.overlay_panel(example["image"], np.asarray(prediction),
                                        example.get("label"), colours=colours,
                                        ignore_index=ignore_index)
        parts = np.split(panel, 3 if example.get("label") is not None else 2, axis=1)
        for column in range(columns):
            axis = axes[row, column]
            if column < len(parts):
                axis.imshow(parts[column], interpolation="nearest")
            else:
                axis.set_axis_off()
            axis.set_title(f"{visualize.example_stem(example, row)}: {titles[column]}"
                           if column == 0 else titles[column], fontsize=9)
    _hide_ticks(axes)
    _legend(figure, colours, class_names)
    figure.tight_layout(rect=(0, 0.06 if class_names else 0, 1, 1))
    return figure


def training_curves(records: Sequence[Mapping], keys: Sequence[str] | None = None):
    """One panel per scalar of metrics.jsonl records (`segjax.train.logging.read_metrics`).

    `keys` default: the training loss, the learning rate and, when the run
    evaluated, the validation mIoU. A key no record holds is an error naming it.
    """
    present = {key for record in records for key in record if key != "step"}
    if keys is None:
        keys = [key for key in ("train/loss", "train/learning_rate", "val/miou") if key in present]
    missing = [key for key in keys if key not in present]
    if missing or not keys:
        raise ValueError(f"training_curves: no records of {missing or 'any scalar'}; the "
                         f"records hold {sorted(present)}")
    figure, axes = _figure(1, len(keys), size=3.6)
    for axis, key in zip(axes[0], keys):
        points = [(record["step"], record[key]) for record in records
                  if key in record and np.isfinite(record[key])]
        steps, values = zip(*points) if points else ((), ())
        axis.plot(steps, values, marker="o" if len(points) < 20 else None)
        axis.set_xlabel("step")
        axis.set_title(key, fontsize=10)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def compare_runs(runs: Mapping[str, Sequence[Mapping]], curve: str = "train/loss",
                 final: str = "val/miou"):
    """Runs side by side: `curve` against the step (one line per run) and the last value of
    `final` per run as a bar. `runs` maps a run's name to its metrics.jsonl records."""
    if not runs:
        raise ValueError("compare_runs: no runs")
    figure, axes = _figure(1, 2, size=4.0)
    lines, bars = axes[0]
    finals = {}
    for name, records in runs.items():
        points = [(r["step"], r[curve]) for r in records if curve in r and np.isfinite(r[curve])]
        values = [r[final] for r in records if final in r and np.isfinite(r[final])]
        if not points or not values:
            raise ValueError(f"compare_runs: run {name!r} has no records of "
                             f"{curve if not points else final}")
        lines.plot(*zip(*points), label=name, marker="o" if len(points) < 20 else None)
        finals[name] = values[-1]
    lines.set_xlabel("step")
    lines.set_title(curve, fontsize=10)
    lines.legend(fontsize=8)
    lines.grid(alpha=0.3)
    positions = np.arange(len(finals))
    bars.bar(positions, list(finals.values()), color="tab:blue", edgecolor="black")
    for position, value in zip(positions, finals.values()):
        bars.text(position, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    bars.set_xticks(positions, list(finals))
    bars.set_title(f"{final} (last)", fontsize=10)
    figure.tight_layout()
    return figure


def per_class_iou(result: Mapping, class_names: Sequence[str] | None = None, *,
                  colours: np.ndarray | None = None):
    """A horizontal bar per class of `result['per_class_iou']` (in %), the mIoU as a line.

    Classes absent from both labels and predictions (NaN IoU) are drawn as
    empty bars marked "n/a".
    """
    iou = np.asarray(result["per_class_iou"], np.float64)
    names = list(class_names or result.get("class_names") or
                 [f"class {index}" for index in range(len(iou))])
    if len(names) != len(iou):
        raise ValueError(f"per_class_iou: {len(names)} class names for {len(iou)} classes")
    figure, axes = _figure(1, 1, size=max(3.0, 0.35 * len(iou) + 1.5))
    axis = axes[0, 0]
    colour = (np.asarray(colours, np.float64) / 255.0 if colours is not None
              else ["tab:blue"] * len(iou))
    positions = np.arange(len(iou))
    axis.barh(positions, np.nan_to_num(100 * iou), color=colour, edgecolor="black")
    for position, value in zip(positions, iou):
        axis.text(0 if np.isnan(value) else 100 * value + 1, position,
                  "n/a" if np.isnan(value) else f"{100 * value:.1f}", va="center", fontsize=8)
    axis.axvline(100 * float(result["miou"]), color="black", linestyle="--",
                 label=f"mIoU {100 * float(result['miou']):.1f}")
    axis.set_yticks(positions, names)
    axis.invert_yaxis()
    axis.set_xlim(0, 105)
    axis.set_xlabel("IoU (%)")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def _section_image(volume: np.ndarray, index: int, axis: int) -> np.ndarray:
    """Section `index` along `axis` of a (D, H, W, C) volume as uint8 RGB (min-max scaled)."""
    return _rgb(visualize.to_uint8(np.take(np.asarray(volume), index, axis=axis)))


def _rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 1) grey or (H, W, 3+) colour -> (H, W, 3): imshow would colour-map one channel."""
    image = np.asarray(image)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def volume_sections(volume: np.ndarray, prediction: np.ndarray, label: np.ndarray | None = None,
                    *, colours: np.ndarray, count: int = 4, axis: int = 0,
                    class_names: Sequence[str] | None = None):
    """`count` evenly spaced sections along `axis` (columns) of a (D, H, W, C) volume: the
    image, the prediction over it and, with `label`, the label over it (rows)."""
    volume, prediction = np.asarray(volume), np.asarray(prediction)
    if volume.ndim != 4 or prediction.shape != volume.shape[:3]:
        raise ValueError(f"volume_sections: expected a (D, H, W, C) volume and a (D, H, W) "
                         f"prediction, got {volume.shape} and {prediction.shape}")
    length = volume.shape[axis]
    indices = np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int))
    rows = [("image", None), ("prediction", prediction)]
    if label is not None:
        rows.append(("label", np.asarray(label)))
    figure, axes = _figure(len(rows), len(indices), size=2.8)
    for column, index in enumerate(indices):
        image = _section_image(volume, int(index), axis)
        for row, (title, classes) in enumerate(rows):
            shown = image if classes is None else visualize.overlay(
                image, np.take(classes, int(index), axis=axis), colours)
            axes[row, column].imshow(shown, interpolation="nearest")
            axes[row, column].set_title(f"{title}, section {index} (axis {axis})", fontsize=8)
    _hide_ticks(axes)
    _legend(figure, colours, class_names)
    figure.tight_layout(rect=(0, 0.06 if class_names else 0, 1, 1))
    return figure


def orthogonal_views(volume: np.ndarray, prediction: np.ndarray, *, colours: np.ndarray,
                     spacing: Sequence[float] = (1.0, 1.0, 1.0), center=None):
    """The (H, W), (D, W) and (D, H) planes through `center` (default: the middle) of a
    (D, H, W, C) volume with the prediction overlaid, drawn at the voxel `spacing`."""
    volume, prediction = np.asarray(volume), np.asarray(prediction)
    center = tuple(center) if center is not None else tuple(s // 2 for s in prediction.shape)
    figure, axes = _figure(1, 3, size=3.6)
    planes = (("axial (H, W)", 0, spacing[1] / spacing[2]),
              ("coronal (D, W)", 1, spacing[0] / spacing[2]),
              ("sagittal (D, H)", 2, spacing[0] / spacing[1]))
    for axis, (title, normal, aspect) in zip(axes[0], planes):
        image = _section_image(volume, center[normal], normal)
        shown = visualize.overlay(image, np.take(prediction, center[normal], axis=normal),
                                  colours)
        axis.imshow(shown, interpolation="nearest", aspect=aspect)
        axis.set_title(f"{title} at {center[normal]}", fontsize=9)
    _hide_ticks(axes)
    figure.tight_layout()
    return figure


def class_voxels(prediction: np.ndarray, class_index: int, *, colour=(230, 25, 75),
                 max_size: int = 32, spacing: Sequence[float] = (1.0, 1.0, 1.0)):
    """The voxels predicted as `class_index` in 3D (depth drawn upwards).

    A prediction larger than `max_size` along an axis is subsampled with a
    stride along it (a voxel is kept when the class holds at its corner), so
    the plot stays light; the title states the strides.
    """
    prediction = np.asarray(prediction)
    if prediction.ndim != 3:
        raise ValueError(f"class_voxels: expected a (D, H, W) prediction, got {prediction.shape}")
    strides = tuple(max(1, math.ceil(size / max_size)) for size in prediction.shape)
    occupied = prediction[::strides[0], ::strides[1], ::strides[2]] == class_index
    filled = np.transpose(occupied, (2, 1, 0))        # plot axes: x = W, y = H, z = D
    figure, axes = _figure(1, 1, size=5.0, subplot_kw={"projection": "3d"})
    axis = axes[0, 0]
    axis.voxels(filled, facecolors=np.asarray(colour) / 255.0, edgecolor=None, alpha=0.6)
    axis.set_box_aspect((filled.shape[0] * strides[2] * spacing[2],
                         filled.shape[1] * strides[1] * spacing[1],
                         filled.shape[2] * strides[0] * spacing[0]))
    axis.set_xlabel("W")
    axis.set_ylabel("H")
    axis.set_zlabel("D")
    axis.set_title(f"class {class_index}: {int(occupied.sum())} voxels shown "
                   f"(strides {strides})", fontsize=9)
    return figure


def panoptic_grid(examples: Sequence[Mapping], maps: Sequence[Mapping], *, colours: np.ndarray,
                  void_label: int = 255, max_rows: int = 4):
    """image | predicted panoptic map | ground-truth panoptic map, per example.

    `maps` are `segjax.evaluation.panoptic_maps` results ('panoptic_class',
    'panoptic_instance'); the ground truth is the example's 'label' and
    'instance'. Instances take `segjax.visualize.panoptic_colours`' shifted
    class colours, outlined where they touch.
    """
    pairs = list(zip(examples, maps))[:max_rows]
    if not pairs:
        raise ValueError("panoptic_grid: no (example, maps) pairs to show")
    figure, axes = _figure(len(pairs), 3, size=3.2)
    for row, (example, predicted) in enumerate(pairs):
        panels = [(visualize.example_stem(example, row), _rgb(example["image"]))]
        panels.append((f"predicted ({_count(predicted['panoptic_instance'])} instances)",
                       visualize.panoptic_colours(predicted["panoptic_class"],
                                                  predicted["panoptic_instance"], colours,
                                                  void_label=void_label)))
        if example.get("instance") is not None:
            panels.append((f"ground truth ({_count(example['instance'])} instances)",
                           visualize.panoptic_colours(example["label"], example["instance"],
                                                      colours, void_label=void_label)))
        for column in range(3):
            if column < len(panels):
                title, shown = panels[column]
                axes[row, column].imshow(shown, interpolation="nearest")
                axes[row, column].set_title(title, fontsize=9)
            else:
                axes[row, column].set_axis_off()
    _hide_ticks(axes)
    figure.tight_layout()
    return figure


def _count(instance: np.ndarray) -> int:
    ids = np.unique(np.asarray(instance))
    return int(np.sum(ids > 0))
