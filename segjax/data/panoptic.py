"""Panoptic data: instance maps, Panoptic-DeepLab's training targets, the panoptic folder source.

A panoptic example is a semantic example plus an instance map:

    {'image', 'label' (class indices), 'instance' int32 (H, W), 'name'}

'instance' holds one positive id per thing instance (unique within the
image) and 0 on stuff, void and crowd pixels. Thing classes are the class
indices in `config.data.panoptic.thing_classes`; every other class is stuff.

`panoptic_targets(label, instance)` builds Panoptic-DeepLab's targets (Cheng
et al. 2020, arXiv:1911.10194, sec. 3.2-3.3; deeplab2's sample_generator)
from those maps. The training pipeline (`segjax.data.pipeline`) calls it
after augmentation and cropping, so flips, rotations and crops move the
instance ids with the labels and the targets describe the crop the network
sees. The batch keys it adds (and the losses in `segjax.panoptic.losses` read):

    center          float32 (H, W): the max over instances of a Gaussian (sigma 8,
                    peak 1) at each instance's centre of mass (rounded to a pixel)
    offset          float32 (H, W, 2): (dy, dx) from each thing pixel to its
                    instance's centre, in pixels; 0 elsewhere
    center_weight   float32 (H, W): 1 where the label is not ignore_index, else 0
    offset_weight   float32 (H, W): 1 on the pixels of instances, else 0
    semantic_weight float32 (H, W): `small_instance_weight` (3) on the pixels of
                    instances smaller than `small_instance_area` (64 x 64), else 1

The 'instance' map itself is dropped from training batches.

The "panoptic_folder" source reads the folder layout of the "folder" source
and adds instance maps: from `<root>/<split>/instances/<stem>.png` (16-bit
ids, 0 = none) when that folder exists, otherwise as the 4-connected
components of each thing class in the label, numbered 1..n. ISBI 2012 is the
second case: cells are the connected components of the interior class (a
thing, `thing_classes=(1,)`), membranes are stuff. The "panoptic_tfds" source
reads the records of the panoptic tfds builders ('cityscapes_panoptic',
'coco_panoptic'; `segjax.data.builders.panoptic_format`), which store
class-index labels and instance maps.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from segjax.data import sources
from segjax.registry import register

TARGET_KEYS = ("center", "offset", "center_weight", "offset_weight", "semantic_weight")


def connected_instances(label: np.ndarray, thing_classes, *, connectivity: int = 1
                        ) -> np.ndarray:
    """int32 (H, W): the connected components of each thing class, numbered 1..n, 0 elsewhere.

    `connectivity` 1 joins pixels sharing an edge (4-neighbourhood), so two
    cells touching at a corner through a one-pixel membrane stay apart; 2 also
    joins diagonal neighbours.
    """
    structure = ndimage.generate_binary_structure(2, connectivity)
    instance = np.zeros(label.shape, np.int32)
    count = 0
    for thing in thing_classes:
        components, found = ndimage.label(label == int(thing), structure=structure)
        instance[components > 0] = components[components > 0] + count
        count += found
    return instance


def instance_centers(instance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, centres (n, 2) as rounded (row, col), areas) of every instance id > 0."""
    ids, flat, areas = np.unique(instance.ravel(), return_inverse=True, return_counts=True)
    rows, cols = np.indices(instance.shape)
    sums = np.stack([np.bincount(flat, weights=rows.ravel(), minlength=len(ids)),
                     np.bincount(flat, weights=cols.ravel(), minlength=len(ids))], axis=-1)
    centres = np.round(sums / areas[:, None]).astype(np.int64)
    keep = ids > 0
    return ids[keep], centres[keep], areas[keep]


def gaussian_heatmap(shape, centres: np.ndarray, sigma: float) -> np.ndarray:
    """float32 (H, W): the max of unit-peak Gaussians at `centres`, each cut at 3 sigma + 1."""
    heatmap = np.zeros(shape, np.float32)
    radius = int(round(3 * sigma + 1))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    for row, col in centres:
        top, left = max(row - radius, 0), max(col - radius, 0)
        bottom, right = min(row + radius + 1, shape[0]), min(col + radius + 1, shape[1])
        if top >= bottom or left >= right:
            continue
        patch = kernel[top - row + radius:bottom - row + radius,
                       left - col + radius:right - col + radius]
        np.maximum(heatmap[top:bottom, left:right], patch, out=heatmap[top:bottom, left:right])
    return heatmap


def panoptic_targets(label: np.ndarray, instance: np.ndarray, *, sigma: float = 8.0,
                     small_instance_area: int = 4096, small_instance_weight: float = 3.0,
                     ignore_index: int = 255) -> dict[str, np.ndarray]:
    """Panoptic-DeepLab's targets of one (H, W) label and instance map (module docstring)."""
    label, instance = np.asarray(label), np.asarray(instance)
    if label.shape != instance.shape:
        raise ValueError(f"panoptic_targets: label {label.shape} and instance map "
                         f"{instance.shape} differ in shape")
    ids, centres, areas = instance_centers(instance)
    lookup = np.zeros((int(instance.max(initial=0)) + 1, 2), np.float32)
    lookup[ids] = centres
    things = instance > 0
    rows, cols = np.indices(instance.shape)
    offset = np.where(things[..., None],
                      lookup[instance] - np.stack([rows, cols], axis=-1), 0).astype(np.float32)
    small = np.zeros(len(lookup), bool)
    small[ids] = areas < small_instance_area
    return {
        "center": gaussian_heatmap(instance.shape, centres, sigma),
        "offset": offset,
        "center_weight": (label != ignore_index).astype(np.float32),
        "offset_weight": things.astype(np.float32),
        "semantic_weight": np.where(small[instance], small_instance_weight, 1.0).astype(
            np.float32),
    }


def targets_from_config(example: dict, data_config) -> dict:
    """`example` with the targets of its label and instance map added and 'instance' dropped."""
    options = data_config.panoptic
    out = {key: value for key, value in example.items() if key != "instance"}
    out.update(panoptic_targets(example["label"], example["instance"], sigma=options.sigma,
                                small_instance_area=options.small_instance_area,
                                small_instance_weight=options.small_instance_weight,
                                ignore_index=int(data_config.ignore_index)))
    return out


def read_instance_map(path) -> np.ndarray:
    """int32 (H, W) instance ids of a single-channel (8- or 16-bit) PNG (a path or a file)."""
    with Image.open(path) as image:
        ids = np.asarray(image)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: an instance map must be a single-channel integer image, got "
                         f"shape {ids.shape} and dtype {ids.dtype}")
    return ids.astype(np.int32)


class PanopticSource:
    """Adds 'instance' maps to the examples of a labelled source (module docstring)."""

    def __init__(self, base, *, thing_classes, instance_dir: Path | None = None):
        self.base, self.instance_dir = base, instance_dir
        self.thing_classes = tuple(int(c) for c in thing_classes)
        if instance_dir is None and not self.thing_classes:
            raise ValueError("panoptic source: data.panoptic.thing_classes is empty and there "
                             "is no instances/ folder; name the thing classes (ISBI 2012: "
                             "(1,), the cell interior)")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        example = dict(self.base[index])
        if example["label"] is None:
            return example
        if self.instance_dir is None:
            example["instance"] = connected_instances(example["label"], self.thing_classes)
            return example
        path = self.instance_dir / f"{Path(example['name']).stem}.png"
        if not path.is_file():
            raise FileNotFoundError(f"example {example['name']} has no instance map {path}")
        example["instance"] = read_instance_map(path)
        if example["instance"].shape != example["label"].shape:
            raise ValueError(f"{path}: instance map {example['instance'].shape} does not match "
                             f"the label {example['label'].shape}")
        return example

    def __repr__(self) -> str:
        return f"PanopticSource({self.base!r}, things {self.thing_classes})"


@register("source", "panoptic_folder")
def panoptic_folder_source(data_config, split: str) -> PanopticSource:
    """The folder source plus instance maps (instances/ folder or thing-class components)."""
    base = sources.folder_source(data_config, split)
    folder, _ = sources.parse_split(split)
    instance_dir = Path(data_config.root) / folder / "instances"
    return PanopticSource(base, thing_classes=data_config.panoptic.thing_classes,
                          instance_dir=instance_dir if instance_dir.is_dir() else None)


class PanopticTfdsSource(sources.TfdsSource):
    """A prepared panoptic tfds dataset: TfdsSource's examples plus the 'instance' map."""

    def __getitem__(self, index: int) -> dict:
        example = super().__getitem__(index)
        instance = self._records[index]["instance"]
        if example["label"] is not None and instance:
            example["instance"] = read_instance_map(io.BytesIO(instance))
        return example


@register("source", "panoptic_tfds")
def panoptic_tfds_source(data_config, split: str) -> PanopticTfdsSource:
    """A panoptic tfds dataset `data.tfds_name` ('cityscapes_panoptic', 'coco_panoptic')."""
    return PanopticTfdsSource(data_config.tfds_name, split, data_dir=data_config.root or None,
                              **dataclasses.asdict(sources.spec_from_config(data_config)))

