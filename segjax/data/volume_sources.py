"""Volume sources: examples of 3D images ("volume", "stack" and "tfds_volume" sources).

A volume example is the 2D example with one more spatial axis, plus where its
voxels sit in the world:

    {'image': float32 (D, H, W, C), 'label': int32 (D, H, W) or None, 'name': str,
     'spacing': (3,) floats, 'affine': (4, 4) float64}

Axes are the file's voxel axes in storage order (`segjax.data.volume_files`).
A 4-D NIfTI or .npy holds the channels (MRI modalities) last, as the Medical
Segmentation Decathlon stores them; a 3-D one has one channel. A label whose
shape differs from its image, a label value outside the label map, or a
non-integer label is an error naming the file.

Sources (kind "source", `config.data.source`):
- "volume": `<root>/<split>/images/<name>.<nii.gz|nii|tif|tiff|npy>` with the
  label of the same name (any of these formats) in `<root>/<split>/labels/`;
  one example per file, split slices select files ('train[:400]').
- "stack": a folder of 2D slices (`<root>/<split>/images/*.png`, the layout
  `FolderSource` reads) as ONE volume: the split's slice selects the slices,
  'train[:24]' is slices 0-23 of train stacked along depth (ISBI 2012's 30
  serial sections form a 30x512x512 stack); spacing from data.volume.spacing.
- "tfds_volume": a prepared tfds dataset whose records hold volume files'
  bytes (`segjax.data.builders.msd`, the Medical Segmentation Decathlon).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from segjax.data.sources import (FolderSource, LabelSpec, parse_split, prepared_records,
                                 record_name, sort_names, spec_from_config, split_folder)
from segjax.data.volume_files import VOLUME_SUFFIXES, Volume, read_volume, volume_stem, volume_suffix
from segjax.registry import register


def image_array(data: np.ndarray, channels: int, where: str) -> np.ndarray:
    """float32 (D, H, W, C) from a (D, H, W) or channels-last (D, H, W, C) array."""
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise ValueError(f"{where}: volume has shape {data.shape}; expected (D, H, W) or "
                         "(D, H, W, C) with the channels (modalities) last")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise ValueError(f"{where}: volume dtype {data.dtype} is not numeric")
    if data.shape[-1] != channels:
        raise ValueError(f"{where}: volume has {data.shape[-1]} channel(s) (shape {data.shape}), "
                         f"expected data.image_channels={channels}")
    return data.astype(np.float32)


def label_array(data: np.ndarray, spec: LabelSpec, num_classes: int | None,
                where: str) -> np.ndarray:
    """int32 (D, H, W) class indices from a label volume of integer values.

    Raw values are mapped by `spec` (data.label_values / ignore_values; an
    unlisted value is an error naming the file); with the identity map, a
    value >= `num_classes` (when known, from data.class_names) is one too.
    """
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{where}: label volume has shape {data.shape}, expected (D, H, W)")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.issubdtype(data.dtype, np.floating) or not np.all(data == np.round(data)):
            raise ValueError(f"{where}: label dtype {data.dtype} with non-integer values; "
                             "expected integer class values")
    label = spec.map_label(np.asarray(data).astype(np.int64), where)
    if not spec.label_values and num_classes:
        values = np.unique(label)
        outside = [int(v) for v in values if v >= num_classes and v != spec.ignore_index]
        if outside:
            raise ValueError(f"{where}: label value(s) {outside} are outside the label map "
                             f"(data.class_names has {num_classes} classes; map raw values "
                             "with data.label_values / data.ignore_values)")
    return label


def volume_example(image: Volume, label: Volume | None, name: str, *, channels: int,
                   spec: LabelSpec, num_classes: int | None, image_where: str,
                   label_where: str = "") -> dict:
    """The example dict (module docstring) of an image volume and its optional label volume."""
    image_data = image_array(image.data, channels, image_where)
    label_data = None
    if label is not None:
        label_data = label_array(label.data, spec, num_classes, label_where)
        if label_data.shape != image_data.shape[:-1]:
            raise ValueError(f"{label_where}: label shape {label_data.shape} does not match "
                             f"its image {image_where} of shape {image_data.shape[:-1]} "
                             "(+ channels)")
    return {"image": image_data, "label": label_data, "name": name,
            "spacing": tuple(image.spacing), "affine": np.asarray(image.affine, np.float64)}


def _num_classes(data_config) -> int | None:
    names = tuple(data_config.get("class_names", ()) or ())
    return len(names) or None


class VolumeFolderSource:
    """`<root>/<split>/images/<name>.<ext>` with labels of the same name in `labels/`."""

    def __init__(self, root: str | Path, split: str, *, image_channels: int,
                 spec: LabelSpec | None = None, num_classes: int | None = None):
        self.root, self.split = Path(root), split
        self.channels = int(image_channels)
        self.spec = spec or LabelSpec(self.channels)
        self.num_classes = num_classes
        folder, selection, image_dir, images = split_folder(self.root, split, _volume_files,
                                                            VOLUME_SUFFIXES)
        names = sort_names(list(images))[selection]
        if not names:
            raise ValueError(f"split {split!r} selects no files from the {len(images)} in "
                             f"{image_dir}")
        self.image_paths = [images[name] for name in names]
        label_dir = self.root / folder / "labels"
        self.label_paths = [None] * len(self.image_paths)
        if label_dir.is_dir():
            labels = _volume_files(label_dir)
            self.label_paths = []
            for name in names:
                if name not in labels:
                    raise FileNotFoundError(f"volume {images[name]} has no label: expected "
                                            f"{label_dir / name}.<{'|'.join(VOLUME_SUFFIXES)}>")
                self.label_paths.append(labels[name])

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict:
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        label = read_volume(label_path) if label_path is not None else None
        return volume_example(read_volume(image_path), label, volume_stem(image_path),
                              channels=self.channels, spec=self.spec,
                              num_classes=self.num_classes, image_where=str(image_path),
                              label_where=str(label_path))

    def __repr__(self) -> str:
        return f"VolumeFolderSource({str(self.root)!r}, {self.split!r}, {len(self)} volumes)"


def _volume_files(folder: Path) -> dict[str, Path]:
    """{stem: path} of the volume files in `folder`; two files of one stem are an error."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or volume_suffix(path) is None:
            continue
        stem = volume_stem(path)
        if stem in files:
            raise ValueError(f"{folder}: {files[stem].name} and {path.name} are both volume "
                             f"{stem!r}; keep one")
        files[stem] = path
    return files


class SliceStackSource:
    """The slices a split selects from a folder of 2D images, stacked into one volume."""

    def __init__(self, root: str | Path, split: str, *, image_channels: int,
                 spec: LabelSpec | None = None, spacing: Sequence[float] = ()):
        spec = spec or LabelSpec(int(image_channels))
        self.slices = FolderSource(root, split, image_channels=image_channels,
                                   label_values=spec.label_values,
                                   ignore_values=spec.ignore_values,
                                   ignore_index=spec.ignore_index)
        self.split = split
        self.spacing = tuple(float(s) for s in spacing) or (1.0, 1.0, 1.0)
        if len(self.spacing) != 3:
            raise ValueError(f"data.volume.spacing={tuple(spacing)}: expected 3 values "
                             "(depth, rows, columns)")
        folder, _ = parse_split(split)
        first, last = (Path(p).stem for p in (self.slices.image_paths[0],
                                              self.slices.image_paths[-1]))
        self.name = f"{folder}_{first}-{last}"
        self._volume: dict | None = None

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        """The stacked volume, read once and kept (training reads it at every step)."""
        if index != 0:
            raise IndexError(f"a slice stack is one volume; index {index} is out of range")
        if self._volume is None:
            self._volume = self._read()
        return dict(self._volume)

    def _read(self) -> dict:
        slices = [self.slices[i] for i in range(len(self.slices))]
        shapes = {s["image"].shape for s in slices}
        if len(shapes) != 1:
            raise ValueError(f"{self.slices.root} {self.split}: slices differ in shape "
                             f"({sorted(shapes)}); a stack needs one slice size")
        image = np.stack([s["image"] for s in slices]).astype(np.float32)
        label = None
        if slices[0]["label"] is not None:
            label = np.stack([s["label"] for s in slices]).astype(np.int32)
        affine = np.diag(list(self.spacing) + [1.0])
        return {"image": image, "label": label, "name": self.name, "spacing": self.spacing,
                "affine": affine}

    def __repr__(self) -> str:
        return f"SliceStackSource({str(self.slices.root)!r}, {self.split!r}, " \
               f"{len(self.slices)} slices)"


class TfdsVolumeSource:
    """A prepared tfds dataset whose records hold volume files' bytes.

    Records: {'image': bytes of a volume file, 'label': bytes (b'' when
    unlabelled), 'name': the image file's name (its suffix says the format)},
    as `segjax.data.builders.msd` writes them; read with `tfds.data_source`.
    """

    def __init__(self, name: str, split: str, *, data_dir: str | None, image_channels: int,
                 spec: LabelSpec | None = None, num_classes: int | None = None):
        if not name:
            raise ValueError("data.tfds_name is empty; name a prepared tfds volume dataset "
                             "(e.g. 'msd_brain_tumour')")
        parse_split(split)
        self.name, self.split = name, split
        self.channels = int(image_channels)
        self.spec = spec or LabelSpec(self.channels)
        self.num_classes = num_classes
        self._records = prepared_records(name, split, data_dir)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        record = self._records[index]
        name = record_name(record)
        where = f"tfds {self.name}:{self.split} {name}"
        image = read_volume(name, record["image"])
        label = read_volume(name, record["label"]) if record["label"] else None
        return volume_example(image, label, volume_stem(name), channels=self.channels,
                              spec=self.spec, num_classes=self.num_classes,
                              image_where=f"{where} image", label_where=f"{where} label")

    def __repr__(self) -> str:
        return f"TfdsVolumeSource({self.name!r}, {self.split!r}, {len(self)} volumes)"


@register("source", "volume")
def volume_source(data_config, split: str) -> VolumeFolderSource:
    """Volume files in `data.root`/<split>/{images,labels} (NIfTI, TIFF stacks, .npy)."""
    if not data_config.root:
        raise ValueError("data.root is empty; set it to the volume folder for "
                         "data.source='volume'")
    return VolumeFolderSource(data_config.root, split,
                              image_channels=int(data_config.image_channels),
                              spec=spec_from_config(data_config),
                              num_classes=_num_classes(data_config))


@register("source", "stack")
def stack_source(data_config, split: str) -> SliceStackSource:
    """The 2D slices of `data.root`/<split> that the split selects, as one volume."""
    if not data_config.root:
        raise ValueError("data.root is empty; set it to the slice folder for data.source='stack'")
    volume = data_config.get("volume") or {}
    return SliceStackSource(data_config.root, split,
                            image_channels=int(data_config.image_channels),
                            spec=spec_from_config(data_config),
                            spacing=tuple(volume.get("spacing", ()) or ()))


@register("source", "tfds_volume")
def tfds_volume_source(data_config, split: str) -> TfdsVolumeSource:
    """A prepared tfds volume dataset `data.tfds_name` in `data.root` (its data_dir)."""
    return TfdsVolumeSource(data_config.tfds_name, split, data_dir=data_config.root or None,
                            image_channels=int(data_config.image_channels),
                            spec=spec_from_config(data_config),
                            num_classes=_num_classes(data_config))
