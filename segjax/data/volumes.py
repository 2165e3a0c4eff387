"""Volumes: reading NIfTI / TIFF stacks / .npy, volume sources, z-scores, training patches.

A volume example is the 2D example with one more spatial axis, plus where its
voxels sit in the world:

    {'image': float32 (D, H, W, C), 'label': int32 (D, H, W) or None, 'name': str,
     'spacing': (3,) floats, 'affine': (4, 4) float64}

Axes are the file's voxel axes in storage order (NIfTI: i, j, k; a TIFF
stack: page, row, column; .npy: as saved), so a prediction written back with
`write_nifti(path, labels, example['affine'])` lies on the input's grid. A
4-D NIfTI or .npy holds the channels (MRI modalities) last, as the Medical
Segmentation Decathlon stores them; a 3-D one has one channel.

Readers (`read_volume`): `.nii` / `.nii.gz` through nibabel (spacing from
the header's voxel sizes, the affine from its qform/sform), multi-page TIFF
through pillow (one page per slice; spacing 1), `.npy` through NumPy (spacing
1). Every reading error names the file; so does a label whose shape differs
from its image, a label value outside the label map, or a non-integer label.

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

Normalisation (`zscore`, config.data.normalization='zscore'): per volume and
channel, subtract the mean and divide by the standard deviation of the
foreground (No New-Net: the brain, i.e. the voxels where any modality is
non-zero, data.volume.zscore_over='nonzero'; 'all' for data without a zero
background such as EM); voxels outside it become 0.

Training patches (`training_patch`, called by `segjax.data.pipeline` for
every volume example): normalise the whole volume, choose a patch centre (with
probability data.volume.foreground_fraction a random voxel of a random
foreground class present in the volume, nnU-Net's oversampling that keeps small
tumours in view; otherwise a uniformly placed patch), cut a window around it
that is larger than data.crop by the context the enabled augmentations
consume (`augmentation_context`), augment the window with the rank-generic
transforms of `segjax.data.transforms` (scale, flips, rot90, rotations,
elastic deformation, brightness/contrast), and take the centre data.crop.
Parts of the window outside the volume are 0 in the image and ignore_index in
the label.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from segjax.data import transforms
from segjax.data.sources import (FolderSource, LabelSpec, parse_split, record_name, sort_names,
                                 spec_from_config, split_folder)
from segjax.registry import register

NIFTI_SUFFIXES = (".nii.gz", ".nii")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + (".tif", ".tiff", ".npy")
ZSCORE_OVER = ("nonzero", "all")


# ----------------------------------------------------------------------------- reading

@dataclasses.dataclass(frozen=True)
class Volume:
    """A volume file's voxels (storage order), voxel spacing and voxel-to-world affine."""

    data: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray


def volume_suffix(name: str | Path) -> str | None:
    """'.nii.gz', '.nii', '.tif', '.tiff' or '.npy' (lower case), or None for another file."""
    lower = str(name).lower()
    return next((suffix for suffix in VOLUME_SUFFIXES if lower.endswith(suffix)), None)


def volume_stem(name: str | Path) -> str:
    """The file name without its volume suffix ('BRATS_001.nii.gz' -> 'BRATS_001')."""
    base = Path(name).name
    suffix = volume_suffix(base)
    return base[:-len(suffix)] if suffix else Path(base).stem


def read_volume(path: str | Path, data: bytes | None = None) -> Volume:
    """The volume in file `path` (or in `data`, that file's bytes); ValueError naming it."""
    suffix = volume_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: not a volume file (expected one of "
                         f"{', '.join(VOLUME_SUFFIXES)})")
    reader = {".nii.gz": _read_nifti, ".nii": _read_nifti, ".tif": _read_tiff_stack,
              ".tiff": _read_tiff_stack, ".npy": _read_npy}[suffix]
    try:
        return reader(Path(path) if data is None else data)
    except (OSError, ValueError, EOFError, ImportError) as error:
        raise ValueError(f"{path}: cannot read volume ({type(error).__name__}: {error})") \
            from error
    except Exception as error:  # nibabel raises its own ImageFileError, pillow others
        raise ValueError(f"{path}: cannot read volume ({type(error).__name__}: {error})") \
            from error


def _identity(rank: int = 3) -> tuple[tuple[float, ...], np.ndarray]:
    return (1.0,) * rank, np.eye(4)


def _read_nifti(source: Path | bytes) -> Volume:
    import nibabel  # pylint: disable=import-outside-toplevel  (only NIfTI needs it)

    if isinstance(source, bytes):
        raw = gzip.decompress(source) if source[:2] == b"\x1f\x8b" else source
        image = nibabel.Nifti1Image.from_bytes(raw)
    else:
        image = nibabel.load(str(source))
    data = np.asanyarray(image.dataobj)
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return Volume(np.asarray(data), spacing, np.asarray(image.affine, np.float64))


def _read_tiff_stack(source: Path | bytes) -> Volume:
    from PIL import Image, ImageSequence  # pylint: disable=import-outside-toplevel

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as stack:
        pages = [np.asarray(page.convert("RGB") if page.mode == "P" else page)
                 for page in ImageSequence.Iterator(stack)]
    shapes = {page.shape for page in pages}
    if len(shapes) != 1:
        raise ValueError(f"TIFF pages differ in shape: {sorted(shapes)}")
    spacing, affine = _identity()
    return Volume(np.stack(pages), spacing, affine)


def _read_npy(source: Path | bytes) -> Volume:
    data = np.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                   allow_pickle=False)
    spacing, affine = _identity()
    return Volume(np.asarray(data), spacing, affine)


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Writes `array` (e.g. a predicted label volume) as NIfTI with `affine` (default identity)."""
    import nibabel  # pylint: disable=import-outside-toplevel

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    if array.dtype == np.int64 or array.dtype == np.bool_:
        array = array.astype(np.int32 if array.max(initial=0) > 255 else np.uint8)
    image = nibabel.Nifti1Image(array, np.eye(4) if affine is None else np.asarray(affine))
    nibabel.save(image, str(path))
    return path


# ----------------------------------------------------------------------------- examples

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
        from segjax.data import builders  # pylint: disable=import-outside-toplevel
        if not name:
            raise ValueError("data.tfds_name is empty; name a prepared tfds volume dataset "
                             "(e.g. 'msd_brain_tumour')")
        parse_split(split)
        self.name, self.split = name, split
        self.channels = int(image_channels)
        self.spec = spec or LabelSpec(self.channels)
        self.num_classes = num_classes
        self._records = builders.prepared_records(name, split, data_dir)

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


# ----------------------------------------------------------------------------- normalisation

def zscore(image: np.ndarray, over: str = "nonzero") -> np.ndarray:
    """Per-channel (x - mean) / std over the foreground of `image` (*spatial, C), float32.

    `over='nonzero'`: the foreground is where any channel is non-zero (the
    brain of a skull-stripped MRI); voxels outside it become 0. `over='all'`:
    every voxel. An empty foreground falls back to all voxels; a constant
    channel is only centred.
    """
    if over not in ZSCORE_OVER:
        raise ValueError(f"data.volume.zscore_over must be one of {ZSCORE_OVER}, got {over!r}")
    image = np.asarray(image, np.float32)
    mask = np.any(image != 0, axis=-1) if over == "nonzero" else None
    if mask is not None and not mask.any():
        mask = None
    values = image.reshape(-1, image.shape[-1]) if mask is None else image[mask]
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    normalized = ((image - mean) / std).astype(np.float32)
    if mask is not None:
        normalized[~mask] = 0.0
    return normalized


# ----------------------------------------------------------------------------- training patches

def augmentation_context(crop: Sequence[int], augment) -> tuple[int, ...]:
    """Voxels of context per side that the enabled augmentations read around a `crop` patch.

    A crop taken from the centre of a window rotated by up to theta in a
    plane reads a window (cos theta + sin theta) times larger along that
    plane's axes (at most sqrt(rank) for rotations in several planes); scaling
    by s reads 1 / s times as far; an elastic field of sigma moves voxels by
    about 3 sigma.
    """
    rank = len(crop)
    factor = np.ones(rank)
    if augment.rotate_degrees > 0:
        theta = math.radians(min(float(augment.rotate_degrees), 45.0))
        for plane in transforms.rotation_planes(rank, bool(augment.get("rotate_out_of_plane",
                                                                       False))):
            factor[list(plane)] *= math.cos(theta) + math.sin(theta)
        factor = np.minimum(factor, math.sqrt(rank))
    factor /= min(1.0, float(min(augment.scale)))
    elastic = 3.0 * float(augment.elastic_sigma)
    return tuple(int(math.ceil((f - 1) * c / 2 + elastic)) for f, c in zip(factor, crop))


def foreground_voxel(rng: np.random.Generator, label: np.ndarray,
                     ignore_index: int) -> tuple[int, ...] | None:
    """A random voxel of a random foreground class (> 0, not ignored) present in `label`."""
    classes = [int(c) for c in np.unique(label) if c > 0 and c != ignore_index]
    if not classes:
        return None
    chosen = classes[int(rng.integers(len(classes)))]
    positions = np.flatnonzero(label == chosen)
    return tuple(int(i) for i in np.unravel_index(positions[int(rng.integers(len(positions)))],
                                                  label.shape))


def _window(array: np.ndarray, starts: Sequence[int], size: Sequence[int], fill) -> np.ndarray:
    """array[starts : starts + size] over the leading axes, `fill` where it leaves the array."""
    out = np.full(tuple(size) + array.shape[len(size):], fill, array.dtype)
    source, target = [], []
    for start, length, extent in zip(starts, size, array.shape):
        lo, hi = max(start, 0), min(start + length, extent)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[tuple(target)] = array[tuple(source)]
    return out


def training_patch(rng: np.random.Generator, example: dict, data_config) -> dict:
    """One augmented, normalised training patch of data.crop from a volume example."""
    from segjax.data import pipeline  # pylint: disable=import-outside-toplevel  (cycle)

    crop = tuple(int(c) for c in data_config.crop)
    shape = example["image"].shape[:-1]
    if len(crop) != len(shape):
        raise ValueError(f"data.crop={crop} has {len(crop)} axes; volume {example.get('name')} "
                         f"has {len(shape)} spatial axes {shape}")
    if data_config.weight_map.enabled:
        raise ValueError("data.weight_map (the U-Net paper's 2D border weights) is not "
                         "defined for volumes; disable it")
    ignore_index = int(data_config.ignore_index)
    augment = data_config.augment
    context = augmentation_context(crop, augment)
    window = [c + 2 * m for c, m in zip(crop, context)]
    if augment.rot90:  # a quarter turn swaps H and W: cut a square (H, W) window
        window[-2:] = [max(window[-2:])] * 2
    volume = data_config.get("volume") or {}
    fraction = float(volume.get("foreground_fraction", 0.0))
    centre = None
    if rng.random() < fraction:
        centre = foreground_voxel(rng, example["label"], ignore_index)
    if centre is None:
        starts = [int(rng.integers(max(n - c, 0) + 1)) for n, c in zip(shape, crop)]
        centre = tuple(s + c // 2 for s, c in zip(starts, crop))
    starts = [p - w // 2 for p, w in zip(centre, window)]
    image = pipeline.normalize(example["image"], data_config)
    patch = {"image": _window(image, starts, window, 0.0),
             "label": _window(example["label"], starts, window, ignore_index)}
    patch = transforms.augment(rng, patch, augment, ignore_index=ignore_index, value_range=None)
    patch = transforms.center_crop(patch, crop)
    return {"image": np.ascontiguousarray(patch["image"], np.float32),
            "label": np.ascontiguousarray(patch["label"], np.int32)}

