"""Semantic datasets read from their released layouts: Cityscapes, ADE20K, VOC + SBD, COCO-Stuff.

Each dataset is read in the folder layout its authors distribute (unzipped,
nothing converted), and registered as a data source of the same name
(`config.data.source`), so a config points `data.root` at the download and
trains. `python -m segjax.data.builders <name> --source DIR` turns the same
folder into array_record files (`segjax.data.builders`) that the "tfds"
source reads with the same labels. None of them is downloaded here: Cityscapes
needs an account, and the others are large archives (their addresses are in
each `Release`'s `homepage`).

    source / tfds name     data.root holds                                       classes
    cityscapes_semantic    leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png  19 train ids
                           gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png
    ade20k_sceneparsing    ADEChallengeData2016/images/{training,validation}/*.jpg   150
                           ADEChallengeData2016/annotations/{training,validation}/*.png
    voc2012_aug            VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,          21
                           ImageSets/Segmentation/{train,val,trainval}.txt}
                           benchmark_RELEASE/dataset/{cls/*.mat,train.txt,val.txt}
    coco_stuff164k         images/{train2017,val2017}/*.jpg                          171
                           annotations/{train2017,val2017}/*.png (the extracted
                           stuffthingmaps_trainval2017.zip; a folder of that name
                           instead of annotations/ is read too)

Labels (the raw value of each pixel becomes a class index through
`data.label_values` / `data.ignore_values`, as every segjax source does; a
raw value outside both is an error naming the file):
- Cityscapes: `*_gtFine_labelIds.png` holds the label ids 0..33 of the
  official label table (cityscapesscripts' labels.py). The 19 evaluated classes
  are the ids with a train id (road = id 7 -> class 0, ..., bicycle = id 33 ->
  class 18), every other id is ignored (255). Licence plates (id -1) are never
  drawn into labelIds images. The test split's annotations are placeholders,
  so 'test' has no labels.
- ADE20K SceneParsing: annotation PNGs hold 0..150; 1..150 are the classes
  (wall = 1 -> class 0), 0 ("other objects") is ignored.
- VOC 2012: `SegmentationClass/*.png` are palette PNGs whose palette index is
  the class (0 background .. 20 tvmonitor) and 255 the void border, read as
  indices (never through the colours); SBD's `cls/<id>.mat` hold the struct
  GTcls whose field Segmentation is the class map (0..20, no void), read with
  scipy.io.loadmat.
- COCO-Stuff-164k: stuff+thing maps hold 0..181 (COCO-Stuff id - 1: person =
  0, ..., wood = 181) and 255 unlabelled; the 11 COCO thing ids that have no
  annotations (street sign, hat, shoe, eye glasses, plate, mirror, window, desk,
  door, blender, hair brush) are not classes, leaving 171 (person 0 .. wood 170).

Splits ('train', 'val', and slices such as 'train[:100]'; natural file order):
- cityscapes_semantic: train 2975, val 500, test 1525 (unlabelled).
- ade20k_sceneparsing: train 20210 (images/training), val 2000 (validation).
- voc2012_aug: train 1464, val 1449, trainval 2913 (VOC's lists, VOC labels),
  and train_aug 10582: SBD train + SBD val + VOC train, minus VOC val (the
  augmented set of DeepLab and mmsegmentation); an image in VOC's train list
  keeps its VOC label (with the void border), the others take SBD's.
- coco_stuff164k: train 118000 (train2017), val 5000 (val2017).

A file that does not belong (a non-image among the images, an image name not
in the dataset's naming scheme, an annotation without its image) or a file
the layout promises but that is missing (an image's label, a listed image) is
an error naming it. Hidden files (names starting with '.') are skipped.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from segjax.data import datasets
from segjax.data.sources import LabelSpec, parse_split, sort_names, spec_from_config
from segjax.registry import register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Release:
    """A dataset's released layout: its classes, raw label values and splits."""

    name: str
    class_names: tuple[str, ...]
    label_values: tuple[int, ...]        # raw value of class i at position i
    ignore_values: tuple[int, ...]
    splits: dict                         # split name -> number of images in the full release
    train_split: str
    val_split: str
    homepage: str
    citation: str


@dataclasses.dataclass(frozen=True)
class Entry:
    """One example of a released layout: its image file and its label file (or None)."""

    name: str
    image: Path
    label: Path | None


class LayoutError(FileNotFoundError):
    """A file missing from, or not belonging to, a dataset's released layout."""


# ----------------------------------------------------------------------------- Cityscapes

# The official label table (cityscapesscripts' labels.py): (id, name, train id); 255 = no
# train id. Ids 0..33 are drawn into *_gtFine_labelIds.png.
CITYSCAPES_LABELS = (
    (0, "unlabeled", 255), (1, "ego vehicle", 255), (2, "rectification border", 255),
    (3, "out of roi", 255), (4, "static", 255), (5, "dynamic", 255), (6, "ground", 255),
    (7, "road", 0), (8, "sidewalk", 1), (9, "parking", 255), (10, "rail track", 255),
    (11, "building", 2), (12, "wall", 3), (13, "fence", 4), (14, "guard rail", 255),
    (15, "bridge", 255), (16, "tunnel", 255), (17, "pole", 5), (18, "polegroup", 255),
    (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8),
    (22, "terrain", 9), (23, "sky", 10), (24, "person", 11), (25, "rider", 12),
    (26, "car", 13), (27, "truck", 14), (28, "bus", 15), (29, "caravan", 255),
    (30, "trailer", 255), (31, "train", 16), (32, "motorcycle", 17), (33, "bicycle", 18),
)
_TRAIN = sorted((train, label_id, name) for label_id, name, train in CITYSCAPES_LABELS
                if train != 255)
CITYSCAPES = Release(
    name="cityscapes_semantic",
    class_names=tuple(name for _, _, name in _TRAIN),
    label_values=tuple(label_id for _, label_id, _ in _TRAIN),
    ignore_values=tuple(label_id for label_id, _, train in CITYSCAPES_LABELS if train == 255),
    splits={"train": 2975, "val": 500, "test": 1525},
    train_split="train", val_split="val",
    homepage="https://www.cityscapes-dataset.com (leftImg8bit_trainvaltest.zip, "
             "gtFine_trainvaltest.zip; an account is needed)",
    citation="Cordts et al., The Cityscapes Dataset for Semantic Urban Scene Understanding, "
             "CVPR 2016")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_entries(root: Path, split: str) -> list[Entry]:
    """Every image of leftImg8bit/<split>/<city>/ with its gtFine labelIds PNG."""
    image_root = _folder(root / "leftImg8bit" / split, "cityscapes_semantic",
                         "leftImg8bit/<split>/<city>/*_leftImg8bit.png")
    stray, entries = [], []
    for city in sorted(_visible(image_root)):
        if not city.is_dir():
            stray.append(city)
            continue
        for image in sorted(_visible(city)):
            if not image.name.endswith(CITYSCAPES_IMAGE_SUFFIX):
                stray.append(image)
                continue
            stem = image.name[:-len(CITYSCAPES_IMAGE_SUFFIX)]
            label = None
            if split != "test":
                label = root / "gtFine" / split / city.name / f"{stem}{CITYSCAPES_LABEL_SUFFIX}"
            entries.append(Entry(image.name, image, label))
    _refuse_stray(stray, f"a Cityscapes image (<city>/<city>_<seq>_<frame>"
                         f"{CITYSCAPES_IMAGE_SUFFIX})")
    _require([e.label for e in entries if e.label is not None], "gtFine labelIds PNG")
    return entries


# ----------------------------------------------------------------------------- ADE20K

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt",
    "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan",
    "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag")
ADE20K = Release(
    name="ade20k_sceneparsing",
    class_names=ADE20K_CLASSES,
    label_values=tuple(range(1, 151)), ignore_values=(0,),
    splits={"train": 20210, "val": 2000},
    train_split="train", val_split="val",
    homepage="http://sceneparsing.csail.mit.edu (ADEChallengeData2016.zip)",
    citation="Zhou et al., Scene Parsing through ADE20K Dataset, CVPR 2017")
ADE20K_FOLDERS = {"train": "training", "val": "validation"}


def ade20k_entries(root: Path, split: str) -> list[Entry]:
    """images/<training|validation>/*.jpg with annotations/<...>/<stem>.png."""
    base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
    folder = _split_folder(split, ADE20K_FOLDERS, "ade20k_sceneparsing")
    return _paired_folders(_folder(base / "images" / folder, "ade20k_sceneparsing",
                                   "ADEChallengeData2016/images/<training|validation>/*.jpg"),
                           base / "annotations" / folder, (".jpg",), "ADE20K")


# ----------------------------------------------------------------------------- VOC + SBD

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC = Release(
    name="voc2012_aug",
    class_names=VOC_CLASSES,
    label_values=tuple(range(len(VOC_CLASSES))), ignore_values=(255,),
    splits={"train": 1464, "val": 1449, "trainval": 2913, "train_aug": 10582},
    train_split="train_aug", val_split="val",
    homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar) "
             "and http://home.bharathh.info/pubs/codes/SBD/download.html (benchmark.tgz)",
    citation="Everingham et al., The PASCAL Visual Object Classes Challenge, IJCV 2010; "
             "Hariharan et al., Semantic Contours from Inverse Detectors, ICCV 2011")


def voc_dirs(root: Path) -> tuple[Path, Path]:
    """(VOC2012 folder, SBD dataset folder) under `root`; the SBD one may not exist."""
    voc = next((c for c in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root)
                if (c / "JPEGImages").is_dir()), None)
    if voc is None:
        raise LayoutError(f"voc2012_aug: no VOCdevkit/VOC2012/JPEGImages under {root} (extract "
                          "VOCtrainval_11-May-2012.tar into data.root)")
    sbd = next((c for c in (root / "benchmark_RELEASE" / "dataset", root / "SBD" / "dataset")
                if c.is_dir()), root / "benchmark_RELEASE" / "dataset")
    return voc, sbd


def _read_list(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise LayoutError(f"voc2012_aug: missing {what} list {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def voc_split_ids(root: Path, split: str) -> dict[str, str]:
    """image id -> 'voc' or 'sbd' (where its label comes from) for a VOC / SBD split."""
    voc, sbd = voc_dirs(root)
    lists = voc / "ImageSets" / "Segmentation"
    if split in ("train", "val", "trainval"):
        return {i: "voc" for i in _read_list(lists / f"{split}.txt", f"VOC {split}")}
    if split != "train_aug":
        raise ValueError(f"voc2012_aug: unknown split {split!r}; splits: "
                         f"{', '.join(VOC.splits)}")
    if not sbd.is_dir():
        raise LayoutError(f"voc2012_aug: split train_aug needs SBD: no {sbd} (extract "
                          "benchmark.tgz into data.root)")
    voc_train = _read_list(lists / "train.txt", "VOC train")
    voc_val = set(_read_list(lists / "val.txt", "VOC val"))
    sbd_ids = _read_list(sbd / "train.txt", "SBD train") + _read_list(sbd / "val.txt", "SBD val")
    chosen = {i: "sbd" for i in sbd_ids if i not in voc_val}
    chosen.update({i: "voc" for i in voc_train})
    return chosen


def voc_entries(root: Path, split: str) -> list[Entry]:
    voc, sbd = voc_dirs(root)
    entries = []
    for image_id, origin in sorted(voc_split_ids(root, split).items(),
                                   key=lambda item: item[0]):
        image = voc / "JPEGImages" / f"{image_id}.jpg"
        if not image.is_file() and (sbd / "img" / f"{image_id}.jpg").is_file():
            image = sbd / "img" / f"{image_id}.jpg"
        label = (voc / "SegmentationClass" / f"{image_id}.png" if origin == "voc"
                 else sbd / "cls" / f"{image_id}.mat")
        entries.append(Entry(image.name, image, label))
    _require([e.image for e in entries], f"image listed in {split}")
    _require([e.label for e in entries], f"label of an image listed in {split}")
    return entries


# ----------------------------------------------------------------------------- COCO-Stuff

COCO_STUFF_NAMES = (  # COCO-Stuff labels.txt, ids 1..182 (the PNGs hold id - 1)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush", "banner", "blanket", "branch", "bridge",
    "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
    "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain",
    "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other",
    "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light",
    "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood")
# COCO thing ids without any annotation (COCO-Stuff README, "Labels").
COCO_UNANNOTATED = ("street sign", "hat", "shoe", "eye glasses", "plate", "mirror", "window",
                    "desk", "door", "blender", "hair brush")
_COCO_USED = [(index, name) for index, name in enumerate(COCO_STUFF_NAMES)
              if name not in COCO_UNANNOTATED]
COCO_STUFF = Release(
    name="coco_stuff164k",
    class_names=tuple(name for _, name in _COCO_USED),
    label_values=tuple(index for index, _ in _COCO_USED), ignore_values=(255,),
    splits={"train": 118000, "val": 5000},
    train_split="train", val_split="val",
    homepage="https://github.com/nightrome/cocostuff (train2017.zip, val2017.zip, "
             "stuffthingmaps_trainval2017.zip)",
    citation="Caesar et al., COCO-Stuff: Thing and Stuff Classes in Context, CVPR 2018")
COCO_FOLDERS = {"train": "train2017", "val": "val2017"}


def coco_stuff_entries(root: Path, split: str) -> list[Entry]:
    """images/<split>2017/*.jpg with the stuff+thing map <stem>.png of the same split."""
    folder = _split_folder(split, COCO_FOLDERS, "coco_stuff164k")
    maps = next((root / name for name in ("annotations", "stuffthingmaps_trainval2017")
                 if (root / name / folder).is_dir()), root / "annotations")
    return _paired_folders(_folder(root / "images" / folder, "coco_stuff164k",
                                   "images/<train2017|val2017>/*.jpg"),
                           maps / folder, (".jpg",), "COCO")


# ----------------------------------------------------------------------------- shared


def _visible(folder: Path):
    return (p for p in folder.iterdir() if not p.name.startswith("."))


def _folder(path: Path, name: str, expected: str) -> Path:
    if not path.is_dir():
        raise LayoutError(f"{name}: no folder {path} (expected {expected} under data.root)")
    return path


def _split_folder(split: str, folders: dict, name: str) -> str:
    if split not in folders:
        raise ValueError(f"{name}: unknown split {split!r}; splits: {', '.join(folders)}")
    return folders[split]


def _refuse_stray(paths: Sequence[Path], expected: str) -> None:
    if paths:
        listed = ", ".join(str(p) for p in paths[:10])
        raise LayoutError(f"{len(paths)} file(s) that do not belong in the dataset folder "
                          f"(expected {expected}); remove them: {listed}")


def _require(paths: Sequence[Path], what: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:10])
        raise LayoutError(f"{len(missing)} {what} file(s) missing: {listed}")


def _paired_folders(images: Path, labels: Path, suffixes: tuple[str, ...], dataset: str
                    ) -> list[Entry]:
    """Images of `images` (every file one of `suffixes`) with the PNG of the same stem in
    `labels`; a stray image, a missing label or a label without its image is an error."""
    files = list(_visible(images))
    stray = [p for p in files if not (p.is_file() and p.suffix.lower() in suffixes)]
    _refuse_stray(stray, f"{dataset} images ({'/'.join(suffixes)}) in {images}")
    if not labels.is_dir():
        raise LayoutError(f"no annotation folder {labels} for the images in {images}")
    entries = [Entry(p.name, p, labels / f"{p.stem}.png")
               for p in (files[i] for i in _natural_order([p.name for p in files]))]
    _require([e.label for e in entries], f"{dataset} annotation PNG")
    stems = {p.stem for p in files}
    orphans = [p for p in _visible(labels) if p.stem not in stems]
    _refuse_stray(orphans, f"one annotation PNG per image of {images}")
    return entries


def _natural_order(names: list[str]) -> list[int]:
    position = {name: index for index, name in enumerate(names)}
    return [position[name] for name in sort_names(names)]


def read_label(path: Path | bytes, where: str) -> np.ndarray:
    """Raw label values (H, W): a PNG's pixel values (palette indices kept as indices), or
    an SBD `.mat` file's GTcls.Segmentation."""
    if isinstance(path, Path) and path.suffix == ".mat":
        return _read_sbd_mat(path)
    try:
        with Image.open(path if isinstance(path, Path) else io.BytesIO(path)) as image:
            array = np.asarray(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: cannot read label image ({error})") from error
    if array.ndim != 2:
        raise ValueError(f"{where}: label has shape {array.shape}, expected a single-channel "
                         "(H, W) image of label values (or a palette PNG)")
    return array


def _read_sbd_mat(path: Path) -> np.ndarray:
    from scipy import io as scipy_io  # pylint: disable=import-outside-toplevel

    try:
        contents = scipy_io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        return np.asarray(contents["GTcls"].Segmentation)
    except Exception as error:  # scipy raises its own MatReadError, and others
        raise ValueError(f"{path}: not an SBD cls file (a .mat with GTcls.Segmentation): "
                         f"{type(error).__name__}: {error}") from error


def label_png_bytes(path: Path, where: str) -> bytes:
    """The label as an 8-bit grey PNG of raw values (palette PNGs and .mat files converted;
    a grey PNG's own bytes otherwise), for records the "tfds" source decodes."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            if image.mode == "L":
                return path.read_bytes()
    raw = read_label(path, where)
    if raw.min(initial=0) < 0 or raw.max(initial=0) > 255:
        raise ValueError(f"{where}: label values outside 0..255")
    buffer = io.BytesIO()
    Image.fromarray(raw.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


class ReleasedSource:
    """The examples of one split of a released layout (grain's random-access protocol)."""

    def __init__(self, release: Release, entries: list[Entry], spec: LabelSpec, where: str):
        self.release, self.entries, self.spec, self.where = release, entries, spec, where

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        image = self.spec.decode_image(entry.image, f"{self.where} image {entry.image}")
        if entry.label is None:
            return {"image": image, "label": None, "name": entry.name}
        where = f"{self.where} label {entry.label}"
        label = self.spec.map_label(read_label(entry.label, where), where)
        if label.shape != image.shape[:2]:
            raise ValueError(f"{where}: label size {label.shape} != image size "
                             f"{image.shape[:2]} of {entry.image}")
        return {"image": image, "label": label, "name": entry.name}

    def __repr__(self) -> str:
        return f"ReleasedSource({self.where!r}, {len(self)} examples)"


LAYOUTS: dict[str, tuple[Release, Callable[[Path, str], list[Entry]]]] = {
    "cityscapes_semantic": (CITYSCAPES, cityscapes_entries),
    "ade20k_sceneparsing": (ADE20K, ade20k_entries),
    "voc2012_aug": (VOC, voc_entries),
    "coco_stuff164k": (COCO_STUFF, coco_stuff_entries),
}


def get(name: str) -> Release:
    if name not in LAYOUTS:
        raise ValueError(f"unknown released dataset {name!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[name][0]


def entries(name: str, root: str | Path, split: str) -> list[Entry]:
    """The (sliced) entries of `split` ('train', 'val[:50]', ...) of dataset `name` at `root`."""
    get(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {str(root)!r} does not exist or is not a directory "
                                f"(the extracted {name} release)")
    folder, selection = parse_split(split)
    found = LAYOUTS[name][1](root, folder)
    if not found:
        raise LayoutError(f"{name}: split {folder!r} of {root} holds no images")
    chosen = found[selection]
    if not chosen:
        raise ValueError(f"split {split!r} selects none of the {len(found)} images of {name}")
    return chosen


def make_source(name: str, root: str | Path, split: str, spec: LabelSpec) -> ReleasedSource:
    return ReleasedSource(get(name), entries(name, root, split), spec, f"{name} {split}")


def apply(name: str, data_config) -> None:
    """Fills `config.data` with dataset `name`: source, root, labels, classes, splits, ImageNet
    normalisation (the pretrained encoders' statistics)."""
    release = get(name)
    data_config.source = name
    data_config.dataset = ""
    data_config.root = datasets.default_root(name)
    data_config.image_channels = 3
    data_config.label_values = release.label_values
    data_config.ignore_values = release.ignore_values
    data_config.class_names = release.class_names
    data_config.train_split = release.train_split
    data_config.val_split = release.val_split
    data_config.mean = IMAGENET_MEAN
    data_config.std = IMAGENET_STD


def _register(name: str) -> None:
    def factory(data_config, split: str) -> ReleasedSource:
        if not data_config.root:
            raise ValueError(f"data.root is empty; set it to the extracted {name} release")
        return make_source(name, data_config.root, split, spec_from_config(data_config))

    factory.__name__ = factory.__qualname__ = f"{name}_source"
    factory.__doc__ = f"`data.root` in {name}'s released layout (module docstring)."
    register("source", name)(factory)


for _name in LAYOUTS:
    _register(_name)
