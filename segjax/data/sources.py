"""Random-access data sources: a folder of images, a prepared tfds dataset, synthetic shapes.

Every source has `len()` and `source[i]` (grain's RandomAccessDataSource
protocol) and returns one example as a dict:

    {'image': uint8 (H, W, C), 'label': int32 (H, W) class indices or None, 'name': str}

or, with data.label_format = 'channels' (a sigmoid head: multi-label or
binary segmentation), 'label' int32 (H, W, K): a stack of K binary masks, 0
or 1 per element, ignore_index where ignored. A label file holds the stack as
the pages of a multi-page TIFF, the channels of a PNG/TIFF, or an (H, W, K)
`.npy` array; a single-channel image is one mask (binary, K = 1). Each
channel's raw values go through the same mapping: label_values = (raw off,
raw on), e.g. (0, 255); without label_values the raw values must be 0 and 1.

Labels are mapped from raw file values to class indices here, once, so that
everything downstream (augmentation, loss, metrics) sees class indices and
`ignore_index`: with `label_values=(0, 255)` raw 0 is class 0 and raw 255 is
class 1; with `label_values=()` raw values are already class indices. Raw
values listed in `ignore_values` become `ignore_index`. A raw value that is in
neither list is an error naming the file, because a silently mislabelled pixel
is the kind of bug nobody finds later.

Splits are written like tfds slices: 'train', 'train[:25]', 'train[25:30]',
'val'. The part before '[' names the folder (or tfds split); the slice selects
by position in the file list, in natural order (digits compare as numbers:
ISBI's 0.png .. 29.png, frame2 before frame10), so a stray file cannot move the
others. A folder source reads every file's header at start: an unreadable file
is an error naming it; an image without a label (or a label without an image)
is left out with a warning naming it.

Split integrity. A folder of a known dataset (`data.dataset`, e.g. ISBI's 30
slices) must hold its known number of images and labels: a missing or extra
file would move a slice's boundaries, so a count mismatch is a `DataError`
naming the folder, the expected and the found count. Splits can also be
named by file lists (`data.split_lists`: a JSON file {"<split>": ["train/
images/25.png", ...]}, paths relative to data.root): a split whose name is in
the file selects exactly those images, in that order (a slice such as
'val[:2]' still applies), and a listed file or its label that is missing is
an error naming it. `split_files` gives the files a split selects; the
training loop records them in the workdir and refuses a resume whose folder
changed (`segjax.train.splits`).
"""

from __future__ import annotations

import collections.abc
import io
import json
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from segjax import registry
from segjax.data import datasets
from segjax.registry import register

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LABEL_FORMATS = ("index", "channels")
ARRAY_SUFFIX = ".npy"   # channel-stack labels may also be NumPy arrays

_SPLIT_RE = re.compile(r"^(?P<name>[A-Za-z0-9_\-]+)(\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")


def parse_split(split: str) -> tuple[str, slice]:
    """'train[25:30]' -> ('train', slice(25, 30)); 'val' -> ('val', slice(None))."""
    match = _SPLIT_RE.match(split.strip())
    if not match:
        raise ValueError(f"split {split!r} is not of the form 'name' or 'name[start:stop]' "
                         "(e.g. 'train', 'train[:25]', 'train[25:30]')")
    start, stop = match.group("start"), match.group("stop")
    return match.group("name"), slice(int(start) if start else None, int(stop) if stop else None)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """'slice10.png' -> ('slice', 10, '.png'): runs of digits compare as numbers, letters
    case-blind; the name itself breaks ties, so the order is total."""
    parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                  for part in _DIGITS.split(name) if part)
    return parts, name


def sort_names(names: Sequence[str]) -> list[str]:
    """Natural order (0.png, 1.png, .., 10.png; frame2 before frame10), the same whatever else
    the folder holds: adding a file never moves the others relative to each other."""
    return sorted(names, key=natural_key)


@dataclass(frozen=True)
class LabelSpec:
    """How raw pixels become an example: image channels and the raw-label -> class mapping."""

    image_channels: int
    label_values: tuple[int, ...] = ()
    ignore_values: tuple[int, ...] = ()
    ignore_index: int = 255
    label_format: str = "index"

    def __post_init__(self):
        if self.label_format not in LABEL_FORMATS:
            raise ValueError(f"data.label_format must be one of {LABEL_FORMATS}, got "
                             f"{self.label_format!r}")
        if self.label_format == "channels" and self.label_values and len(self.label_values) != 2:
            raise ValueError(f"data.label_values={self.label_values}: channel masks take two raw "
                             "values, (off, on), e.g. (0, 255)")

    def decode_image(self, data: Any, where: str) -> np.ndarray:
        """uint8 (H, W, C) from a path or encoded bytes; checks the channel count."""
        image = np.asarray(_open(data, where))
        if image.ndim == 2:
            image = image[..., None]
        if image.dtype != np.uint8:
            raise ValueError(f"{where}: image dtype {image.dtype}, expected 8-bit (uint8) pixels")
        if image.shape[-1] != self.image_channels:
            raise ValueError(f"{where}: image has {image.shape[-1]} channel(s), expected "
                             f"data.image_channels={self.image_channels}")
        return image

    def decode_label(self, data: Any, where: str) -> np.ndarray:
        """int32 (H, W) class indices (ignore_index where the raw value is ignored), or
        int32 (H, W, K) masks with label_format 'channels'."""
        if self.label_format == "channels":
            return self.decode_channels(data, where)
        raw = np.asarray(_open(data, where))
        if raw.ndim != 2:
            raise ValueError(f"{where}: label has shape {raw.shape}, expected a single-channel "
                             "(H, W) image of class values")
        if not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"{where}: label dtype {raw.dtype}, expected integer class values")
        return self.map_label(raw, where)

    def decode_channels(self, data: Any, where: str) -> np.ndarray:
        """int32 (H, W, K) 0/1 masks from a multi-page TIFF, a multi-channel image or .npy."""
        raw = _read_stack(data, where)
        if not np.issubdtype(raw.dtype, np.integer) and raw.dtype != bool:
            raise ValueError(f"{where}: mask dtype {raw.dtype}, expected integer mask values")
        raw = raw.astype(np.int64)
        if not self.label_values:
            allowed = {0, 1, *self.ignore_values}
            unexpected = sorted(int(v) for v in np.unique(raw) if int(v) not in allowed)
            if unexpected:
                raise ValueError(f"{where}: mask values {unexpected[:10]} are not 0/1; set "
                                 "data.label_values=(raw off, raw on), e.g. (0, 255), or list "
                                 "them in data.ignore_values")
        return self.map_label(raw, where)

    def map_label(self, raw: np.ndarray, where: str) -> np.ndarray:
        raw = raw.astype(np.int64)
        if raw.size and raw.min() < 0:
            raise ValueError(f"{where}: negative label value {int(raw.min())}")
        present = np.flatnonzero(np.bincount(raw.ravel(), minlength=1))
        table = np.arange(max(int(present.max(initial=0)), *self.label_values,
                              *self.ignore_values, 0) + 1, dtype=np.int64)
        if self.label_values:
            allowed = set(self.label_values) | set(self.ignore_values)
            unexpected = [int(v) for v in present if int(v) not in allowed]
            if unexpected:
                raise ValueError(
                    f"{where}: label value(s) {unexpected} not in data.label_values="
                    f"{tuple(self.label_values)} or data.ignore_values={tuple(self.ignore_values)}")
            table[:] = self.ignore_index
            for index, value in enumerate(self.label_values):
                table[value] = index
        for value in self.ignore_values:
            table[value] = self.ignore_index
        return table[raw].astype(np.int32)

    def example(self, image: Any, label: Any, name: str, where: str) -> dict:
        image_array = self.decode_image(image, f"{where} image {name}")
        if label is None:
            return {"image": image_array, "label": None, "name": name}
        label_array = self.decode_label(label, f"{where} label {name}")
        if label_array.shape[:2] != image_array.shape[:2] or label_array.ndim != (
                3 if self.label_format == "channels" else 2):
            raise ValueError(f"{where} {name}: label size {label_array.shape} != image size "
                             f"{image_array.shape[:2]}")
        return {"image": image_array, "label": label_array, "name": name}


def _read_stack(data: Any, where: str) -> np.ndarray:
    """(H, W, K) raw masks: .npy arrays, the pages of a multi-page TIFF, or an image's
    channels (one channel: K = 1)."""
    if isinstance(data, (str, Path)) and str(data).endswith(ARRAY_SUFFIX):
        try:
            stack = np.load(data, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"{where}: cannot read mask array ({error})") from error
    else:
        image = _open(data, where)
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            pages = []
            for page in range(frames):
                image.seek(page)
                pages.append(np.asarray(image))
            stack = np.stack(pages, axis=-1)
        else:
            stack = np.asarray(image)
    if stack.ndim == 2:
        stack = stack[..., None]
    if stack.ndim != 3:
        raise ValueError(f"{where}: masks of shape {stack.shape}; expected (H, W, K) or (H, W)")
    return stack


def _open(data: Any, where: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        image.load()
    except (OSError, ValueError) as error:
        file = "" if isinstance(data, bytes) else f" {data}"
        raise ValueError(f"{where}: cannot read image{file} ({error})") from error
    if image.mode == "P":
        image = image.convert("RGB")
    return image


def spec_from_config(data_config) -> LabelSpec:
    return LabelSpec(image_channels=int(data_config.image_channels),
                     label_values=tuple(int(v) for v in data_config.label_values),
                     ignore_values=tuple(int(v) for v in data_config.ignore_values),
                     ignore_index=int(data_config.ignore_index),
                     label_format=str(data_config.get("label_format", "index")))


class FolderSource:
    """`<root>/<split>/images/*` with labels of the same stem in `<root>/<split>/labels/`.

    A split without a labels folder (ISBI's test/) yields `label=None`. With
    label_format 'channels' a label may also be an `.npy` array.
    """

    def __init__(self, root: str | Path, split: str, *, image_channels: int,
                 label_values: Sequence[int] = (), ignore_values: Sequence[int] = (),
                 ignore_index: int = 255, label_format: str = "index",
                 files: Sequence[str] | None = None):
        self.spec = LabelSpec(int(image_channels), tuple(label_values), tuple(ignore_values),
                              int(ignore_index), label_format)
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root {str(self.root)!r} does not exist or is not a "
                                    "directory")
        if files is not None:
            self.image_paths, self.label_paths = _listed_pairs(self.root, split, files)
            check_readable(self.image_paths + [p for p in self.label_paths if p is not None])
            return
        folder, selection, image_dir, images = split_folder(self.root, split, _image_files,
                                                            IMAGE_SUFFIXES)
        label_dir = self.root / folder / "labels"
        label_suffixes = IMAGE_SUFFIXES + ((ARRAY_SUFFIX,) if label_format == "channels" else ())
        labels = ({Path(n).stem: p for n, p in _image_files(label_dir, label_suffixes).items()}
                  if label_dir.is_dir() else None)
        if labels is not None:
            images = _paired_images(images, labels, image_dir, label_dir)
        names = sort_names(list(images))
        check_readable([images[n] for n in names] +
                       ([labels[Path(n).stem] for n in names] if labels is not None else []))
        self.image_paths = [images[n] for n in names][selection]
        self.label_paths = ([labels[path.stem] for path in self.image_paths]
                            if labels is not None else [None] * len(self.image_paths))
        if not self.image_paths:
            raise ValueError(f"split {split!r} selects no files from the {len(names)} in "
                             f"{image_dir}")

    @property
    def has_labels(self) -> bool:
        return self.label_paths[0] is not None

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict:
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        return self.spec.example(image_path, label_path, image_path.name, str(self.root))

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r}, {self.split!r}, {len(self)} examples)"


def _listed_pairs(root: Path, split: str, files: Sequence[str]
                  ) -> tuple[list[Path], list[Path | None]]:
    """(image paths, label paths) of a listed split: <folder>/images/<name> and the label of
    the same stem in <folder>/labels/ (None where that folder does not exist)."""
    _, selection = parse_split(split)
    images, labels, missing = [], [], []
    for entry in list(files)[selection]:
        image = root / entry
        label_dir = image.parent.parent / "labels"
        label = None
        if not image.is_file():
            missing.append(str(image))
        elif label_dir.is_dir():
            found = [p for p in label_dir.glob(f"{glob_escape(image.stem)}.*")
                     if p.suffix.lower() in IMAGE_SUFFIXES]
            label = found[0] if found else None
            if label is None:
                missing.append(f"{label_dir}/{image.stem}.* (the label of {entry})")
        images.append(image)
        labels.append(label)
    if missing:
        raise datasets.DataError(
            f"split {split!r} of data.split_lists: {len(missing)} listed file(s) missing: "
            f"{', '.join(missing[:10])}")
    if not images:
        raise datasets.DataError(f"split {split!r} of data.split_lists selects no files")
    return images, labels


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def split_folder(root: Path, split: str, list_files, suffixes: Sequence[str]):
    """(folder, selection, images dir, {name: path}) of `<root>/<split>/images`; errors name
    the folder when it is missing or holds no file with one of `suffixes`."""
    folder, selection = parse_split(split)
    image_dir = Path(root) / folder / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"split {split!r}: no images folder {image_dir} (expected "
                                "<root>/<split>/images and <root>/<split>/labels)")
    files = list_files(image_dir)
    if not files:
        raise FileNotFoundError(f"split {split!r}: no {'/'.join(suffixes)} files in {image_dir}")
    return folder, selection, image_dir, files


def _image_files(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in suffixes}


def _paired_images(images: dict[str, Path], labels: dict[str, Path], image_dir: Path,
                   label_dir: Path) -> dict[str, Path]:
    """The images that have a label; a warning names the files of either side left unpaired."""
    unlabelled = sort_names([n for n, p in images.items() if p.stem not in labels])
    stems = {p.stem for p in images.values()}
    orphans = sort_names([p.name for stem, p in labels.items() if stem not in stems])
    if unlabelled:
        warnings.warn(f"{image_dir}: {len(unlabelled)} image(s) without a label in {label_dir}, "
                      f"left out: {', '.join(unlabelled[:10])}", stacklevel=3)
    if orphans:
        warnings.warn(f"{label_dir}: {len(orphans)} label(s) without an image in {image_dir}, "
                      f"ignored: {', '.join(orphans[:10])}", stacklevel=3)
    return {n: p for n, p in images.items() if p.stem in labels}


def check_readable(paths: Sequence[Path]) -> None:
    """Opens every file's header; a ValueError names each one that is not a readable image."""
    broken = []
    for path in paths:
        try:
            if path.suffix.lower() == ARRAY_SUFFIX:
                np.load(path, mmap_mode="r", allow_pickle=False)
                continue
            with Image.open(path) as image:
                image.size  # noqa: B018  (parses the header)
        except (OSError, ValueError) as error:
            broken.append(f"{path} ({error})")
    if broken:
        raise ValueError(f"{len(broken)} file(s) in the dataset folder are not readable images; "
                         f"remove or replace them: {'; '.join(broken[:10])}")


def prepared_records(name: str, split: str, data_dir: str | None):
    """The records of a prepared tfds dataset's split (random access, no TensorFlow)."""
    import tensorflow_datasets as tfds  # heavy; only the tfds sources need it

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"tfds dataset {name!r} (data.tfds_name) is not prepared in {builder.data_dir} "
            f"(data.root={data_dir!r}); build it with `python -m segjax.data.builders "
            f"{name} --source DIR --data_dir {data_dir or 'DATA_DIR'}`")
    return builder.as_data_source(split=split)


def record_name(record) -> str:
    """A prepared record's file name (tfds returns text features as bytes)."""
    name = record["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


class TfdsSource:
    """A prepared tfds dataset read with `tfds.data_source` (array_record, no TensorFlow).

    Records hold encoded image bytes ('image', 'label'; an empty label for
    unlabelled splits) and 'name', as written by `segjax.data.builders`.
    """

    def __init__(self, name: str, split: str, *, data_dir: str | None = None,
                 image_channels: int, label_values: Sequence[int] = (),
                 ignore_values: Sequence[int] = (), ignore_index: int = 255,
                 label_format: str = "index"):
        if not name:
            raise ValueError("data.tfds_name is empty; name a prepared tfds dataset "
                             "(e.g. 'isbi2012_em', 'camvid')")
        parse_split(split)
        self.name, self.split, self.data_dir = name, split, data_dir or None
        self.spec = LabelSpec(int(image_channels), tuple(label_values), tuple(ignore_values),
                              int(ignore_index), label_format)
        self._records = prepared_records(name, split, self.data_dir)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        record = self._records[index]
        name = record_name(record)
        label = record["label"] or None
        return self.spec.example(record["image"], label, name, f"tfds {self.name}:{self.split}")

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, {self.split!r}, {len(self)} examples)"


class SyntheticSource:
    """Deterministic random discs and rectangles on a noisy background (unit tests only).

    Class c > 0 shapes have mean intensity c / num_classes * 200 + 40 and the
    background 20, so the label is a (learnable) function of the image.
    """

    def __init__(self, num_examples: int, height: int, width: int, channels: int,
                 num_classes: int, seed: int = 0):
        if num_classes < 2:
            raise ValueError(f"SyntheticSource needs num_classes >= 2, got {num_classes}")
        self.num_examples, self.height, self.width = int(num_examples), int(height), int(width)
        self.channels, self.num_classes, self.seed = int(channels), int(num_classes), int(seed)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_examples:
            raise IndexError(f"SyntheticSource index {index} out of range [0, {self.num_examples})")
        rng = np.random.default_rng([self.seed, index])
        label = np.zeros((self.height, self.width), np.int32)
        rows, cols = np.mgrid[:self.height, :self.width]
        for _ in range(rng.integers(2, 6)):
            cls = int(rng.integers(1, self.num_classes))
            cy, cx = rng.uniform(0, self.height), rng.uniform(0, self.width)
            size = rng.uniform(0.08, 0.25) * min(self.height, self.width)
            if rng.random() < 0.5:
                shape = (rows - cy) ** 2 + (cols - cx) ** 2 <= size ** 2
            else:
                shape = (np.abs(rows - cy) <= size) & (np.abs(cols - cx) <= size * 0.7)
            label[shape] = cls
        level = np.where(label > 0, 40 + 200 * label / self.num_classes, 20.0)
        noise = rng.normal(0, 8, (self.height, self.width, self.channels))
        image = np.clip(level[..., None] + noise, 0, 255).astype(np.uint8)
        return {"image": image, "label": label, "name": f"synthetic_{index}"}


def make_source(data_config, split: str):
    """The registered source named by `data_config.source`, for `split`.

    A source factory registers with `@register("source", name)` and is called
    as `factory(data_config, split)`; it returns an object with `len()` and
    `source[i]` giving the example dict above.
    """
    factory = registry.lookup("source", str(data_config.source), "data.source")
    return factory(data_config, split)


class SourceView(collections.abc.Sequence):
    """Positions `indices` (default: all) of a source, read when accessed, so a split of
    volumes need not fit in memory; a slice is a view over fewer positions."""

    def __init__(self, source, indices: range | None = None):
        self.source = source
        self.indices = range(len(source)) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return SourceView(self.source, self.indices[index])
        return self.source[self.indices[index]]


def load_split(data_config, split: str, *, decode_all: bool = False) -> SourceView:
    """Every example of `split`, unaugmented ({'image', 'label' int32 or None, 'name'}).

    `decode_all`: decode every example now (a validation split, which is small),
    so a file whose header reads but whose pixels do not (a truncated PNG) is a
    `DataError` naming it before any training, not at the final evaluation.
    """
    view = SourceView(make_source(data_config, split))
    if decode_all:
        for index in range(len(view)):
            try:
                view[index]
            except ValueError as error:
                raise datasets.DataError(f"split {split!r}: {error}; replace or remove the "
                                         "file (checked before training)") from None
    return view


def _label_options(data_config) -> dict:
    spec = spec_from_config(data_config)
    return dict(image_channels=spec.image_channels, label_values=spec.label_values,
                ignore_values=spec.ignore_values, ignore_index=spec.ignore_index,
                label_format=spec.label_format)


def ensure_dataset(data_config) -> None:
    """Fetches a known `data.dataset` into a missing `data.root` (folder source only).

    The training loop calls it before it creates the workdir, so a run that
    cannot get its data leaves nothing behind (`datasets.DatasetUnavailable`).
    """
    dataset = data_config.get("dataset", "")
    if (str(data_config.source) == "folder" and dataset and data_config.root
            and not Path(data_config.root).is_dir()):
        datasets.ensure(dataset, data_config.root, url=data_config.get("download_url", ""))


@register("source", "folder")
def folder_source(data_config, split: str) -> FolderSource:
    """`data.root`/<split>/{images,labels}; a missing root of a known `data.dataset` is fetched."""
    if not data_config.root:
        raise ValueError("data.root is empty; set it to the dataset folder for "
                         "data.source='folder'")
    ensure_dataset(data_config)
    listed = split_lists(data_config).get(parse_split(split)[0])
    if listed is None:
        check_known_counts(data_config, split)
    return FolderSource(data_config.root, split, files=listed, **_label_options(data_config))


def split_lists(data_config) -> dict[str, list[str]]:
    """{split name: [file paths relative to data.root]} of `data.split_lists` ({} if unset)."""
    path = str(data_config.get("split_lists", "") or "")
    if not path:
        return {}
    try:
        lists = json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError) as error:
        raise datasets.DataError(f"data.split_lists={path!r}: cannot read it as JSON "
                                 f"({error})") from None
    if not (isinstance(lists, dict) and all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in lists.values())):
        raise datasets.DataError(f"data.split_lists={path!r}: expected a JSON object of split "
                                 'name -> list of file paths, e.g. {"val": '
                                 '["train/images/25.png"]}')
    return lists


def check_known_counts(data_config, split: str) -> None:
    """A folder of a known dataset holds its known number of images (and labels)."""
    dataset = data_config.get("dataset", "")
    folder = parse_split(split)[0]
    expected = datasets.get(dataset).expected_counts.get(folder) if dataset else None
    if expected is None:
        return
    for kind in ("images", "labels"):
        directory = Path(data_config.root) / folder / kind
        if not directory.is_dir():
            continue
        found = len(_image_files(directory))
        if found != expected:
            raise datasets.DataError(
                f"{directory} holds {found} image files, expected {expected} for the "
                f"{dataset} dataset (data.dataset); a missing or extra file would move the "
                f"boundaries of split {split!r}. Restore the folder, or name the files of "
                "each split in data.split_lists (a JSON file)")


def split_files(source) -> list[str] | None:
    """The files a source's examples come from, relative to its root (None: not files)."""
    if not (hasattr(source, "image_paths") and hasattr(source, "root")):
        return None
    root = Path(source.root)
    return [str(Path(path).relative_to(root)) if Path(path).is_relative_to(root)
            else str(path) for path in source.image_paths]


@register("source", "tfds")
def tfds_source(data_config, split: str) -> TfdsSource:
    """A prepared tfds dataset `data.tfds_name` in `data.root` (its data_dir)."""
    return TfdsSource(data_config.tfds_name, split, data_dir=data_config.root or None,
                      **_label_options(data_config))


@register("source", "synthetic")
def synthetic_source(data_config, split: str) -> SourceView:
    """`data.synthetic` shapes; each split name draws its own examples."""
    name, selection = parse_split(split)
    synthetic = data_config.synthetic
    full = SyntheticSource(synthetic.num_examples, synthetic.height, synthetic.width,
                           int(data_config.image_channels), synthetic.num_classes,
                           seed=zlib.crc32(name.encode()))
    return SourceView(full, range(len(full))[selection])
