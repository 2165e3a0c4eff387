"""Tiny copies of the released datasets, written in each one's exact file names and encodings.

Tests (and the reduced-budget runs of docs/reproductions.md) cannot have the
real Cityscapes, ADE20K, VOC + SBD, COCO-Stuff or BraTS here, so these
writers lay out synthetic scenes in each dataset's own layout (the folders,
names and label encodings of `segjax.data.released` and the MSD builder):
every image is a few discs and boxes of random classes on a background class,
each class drawn in its own colour with noise, so that a network can learn the
labels; some pixels carry a raw value the dataset ignores. The top-left
4 x 4 pixels of each split's first image carry the dataset's `MARKERS` (one raw
value per 4 x 4 block along the first rows), whose class after mapping the
tests check.

    python -m tests.data.layouts cityscapes_semantic --out DIR --images 64 --size 128x256

writes a larger copy for a run (`--images` per split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from segjax.data import released

# Raw label values painted as 4x4 blocks at the top left of each split's first image, and the
# class each must map to (255 = ignored). Cityscapes: car (id 26) -> 13, unlabeled (0) -> 255,
# road (7) -> 0, license-plate-free ego vehicle (1) -> 255, bicycle (33) -> 18.
MARKERS = {
    "cityscapes_semantic": ((26, 13), (0, 255), (7, 0), (1, 255), (33, 18)),
    "ade20k_sceneparsing": ((1, 0), (0, 255), (150, 149), (13, 12)),
    "voc2012_aug": ((15, 15), (255, 255), (0, 0), (20, 20)),
    "coco_stuff164k": ((0, 0), (255, 255), (91, 80), (181, 170), (12, 11)),
}
BLOCK = 4


def _colours(count: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (count, 3))


def synthetic_scene(rng: np.random.Generator, size: tuple[int, int], raw_values,
                    ignore_value: int | None, colours: np.ndarray):
    """(image uint8 (H, W, 3), raw label (H, W)): shapes of random classes, each class a
    colour (+ noise), and (if `ignore_value`) a thin ignored border around one shape."""
    height, width = size
    classes = rng.integers(0, len(raw_values), 1 + int(rng.integers(2, 5)))
    label = np.full(size, classes[0], np.int64)
    rows, cols = np.mgrid[:height, :width]
    border = np.zeros(size, bool)
    for index, cls in enumerate(classes[1:]):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.12, 0.3) * min(size)
        if rng.random() < 0.5:
            shape = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
            ring = (rows - cy) ** 2 + (cols - cx) ** 2 <= (radius + 1.5) ** 2
        else:
            shape = (abs(rows - cy) <= radius) & (abs(cols - cx) <= radius * 1.3)
            ring = (abs(rows - cy) <= radius + 1.5) & (abs(cols - cx) <= radius * 1.3 + 1.5)
        label[shape] = cls
        if index == 0:
            border = ring & ~shape
    image = colours[label] + rng.normal(0, 12, (*size, 3))
    raw = np.asarray(raw_values)[label]
    if ignore_value is not None:
        raw[border] = ignore_value
    return np.clip(image, 0, 255).astype(np.uint8), raw


def _paint_markers(raw: np.ndarray, name: str) -> None:
    for index, (value, _) in enumerate(MARKERS[name]):
        raw[:BLOCK, index * BLOCK:(index + 1) * BLOCK] = value


def _scenes(name: str, count: int, size, seed: int, raw_values, ignore_value):
    """`count` (image, raw label) pairs; the first carries the markers."""
    rng = np.random.default_rng(seed)
    colours = _colours(len(raw_values))
    for index in range(count):
        height, width = size
        if name in ("ade20k_sceneparsing", "voc2012_aug", "coco_stuff164k"):
            height += int(rng.integers(0, 2)) * 32   # these datasets' images differ in size
            width += int(rng.integers(0, 2)) * 32
        image, raw = synthetic_scene(rng, (height, width), raw_values, ignore_value, colours)
        if index == 0:
            _paint_markers(raw, name)
        yield index, image, raw


def _save(array: np.ndarray, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


# ----------------------------------------------------------------------------- writers


def write_cityscapes(root: Path, *, images: int = 2, size=(32, 64), seed: int = 0) -> Path:
    """leftImg8bit/<split>/<city>/ + gtFine/<split>/<city>/ (labelIds, color, instanceIds,
    polygons, as the gtFine archive holds them); test labels are placeholders (all 0)."""
    release = released.CITYSCAPES
    cities = {"train": ("aachen", "bochum"), "val": ("frankfurt",), "test": ("berlin",)}
    for split_index, (split, names) in enumerate(cities.items()):
        scenes = _scenes(release.name, images, size, seed + split_index,
                         release.label_values, 0)
        for index, image, raw in scenes:
            city = names[index % len(names)]
            stem = f"{city}_{index:06d}_{19 + index:06d}"
            _save(image, root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            gt = root / "gtFine" / split / city
            raw = raw if split != "test" else np.zeros_like(raw)
            _save(raw.astype(np.uint8), gt / f"{stem}_gtFine_labelIds.png")
            _save(_colours(34)[raw].astype(np.uint8), gt / f"{stem}_gtFine_color.png")
            _save((raw * 1000).astype(np.uint16), gt / f"{stem}_gtFine_instanceIds.png")
            (gt / f"{stem}_gtFine_polygons.json").write_text(json.dumps(
                {"imgHeight": int(raw.shape[0]), "imgWidth": int(raw.shape[1]), "objects": []}))
    return root


def write_cityscapes_panoptic(root: Path, *, images: int = 2, size=(32, 64), seed: int = 0
                              ) -> Path:
    """The semantic layout plus what cityscapesscripts' createPanopticImgs writes:
    gtFine/cityscapes_panoptic_<split>.json and gtFine/cityscapes_panoptic_<split>/
    <stem>_gtFine_panoptic.png (segment id = R + 256 G + 256^2 B; things: label id * 1000 +
    instance, the 4-connected components of each thing class; stuff: the label id; void: 0)."""
    from scipy import ndimage

    write_cityscapes(root, images=images, size=size, seed=seed)
    labels = {label_id: (name, train) for label_id, name, train in released.CITYSCAPES_LABELS}
    categories = [{"id": label_id, "name": name, "isthing": int(train >= 11)}
                  for label_id, (name, train) in labels.items() if train != 255]
    for split in ("train", "val"):
        annotations = []
        for path in sorted((root / "gtFine" / split).rglob("*_gtFine_labelIds.png")):
            raw = np.asarray(Image.open(path)).astype(np.int64)
            ids, segments = np.zeros(raw.shape, np.int64), []
            for label_id in np.unique(raw):
                name, train = labels[int(label_id)]
                if train == 255:
                    continue
                if train >= 11:
                    components, count = ndimage.label(raw == label_id)
                    pieces = [(components == k, int(label_id) * 1000 + k)
                              for k in range(1, count + 1)]
                else:
                    pieces = [(raw == label_id, int(label_id))]
                for mask, segment in pieces:
                    ids[mask] = segment
                    segments.append({"id": segment, "category_id": int(label_id),
                                     "iscrowd": 0, "area": int(mask.sum())})
            stem = path.name[:-len("_gtFine_labelIds.png")]
            rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
            _save(rgb, root / "gtFine" / f"cityscapes_panoptic_{split}" /
                  f"{stem}_gtFine_panoptic.png")
            annotations.append({"image_id": stem, "file_name": f"{stem}_gtFine_panoptic.png",
                                "segments_info": segments})
        (root / "gtFine" / f"cityscapes_panoptic_{split}.json").write_text(json.dumps(
            {"annotations": annotations, "categories": categories,
             "images": [{"id": a["image_id"], "file_name": a["image_id"] + "_leftImg8bit.png"}
                        for a in annotations]}))
    return root


def write_ade20k(root: Path, *, images: int = 2, size=(64, 64), seed: int = 0) -> Path:
    """ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_<split>_<n>.*"""
    release = released.ADE20K
    base = root / "ADEChallengeData2016"
    for split_index, folder in enumerate(("training", "validation")):
        prefix = "train" if folder == "training" else "val"
        for index, image, raw in _scenes(release.name, images, size, seed + split_index,
                                         release.label_values, 0):
            stem = f"ADE_{prefix}_{index + 1:08d}"
            _save(image, base / "images" / folder / f"{stem}.jpg", quality=95)
            _save(raw.astype(np.uint8), base / "annotations" / folder / f"{stem}.png")
    (base / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n")
    return root


def voc_palette() -> list[int]:
    """PASCAL VOC's colour map (bits of the index spread over R, G, B), 256 entries."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [r, g, b]
    return palette


def write_sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    """An SBD `cls/<id>.mat`: struct GTcls with Segmentation, Boundaries, CategoriesPresent."""
    from scipy import io as scipy_io

    path.parent.mkdir(parents=True, exist_ok=True)
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8)
    boundaries = np.empty((20, 1), dtype=object)
    for index in range(20):
        boundaries[index, 0] = np.zeros(segmentation.shape, np.uint8)
    scipy_io.savemat(str(path), {"GTcls": {
        "Segmentation": segmentation.astype(np.uint8), "Boundaries": boundaries,
        "CategoriesPresent": present}})


def write_voc(root: Path, *, images: int = 2, size=(64, 64), seed: int = 0) -> Path:
    """VOCdevkit/VOC2012 (JPEGImages, SegmentationClass palette PNGs, ImageSets/Segmentation
    train/val/trainval) and benchmark_RELEASE/dataset (img, cls .mat, train.txt, val.txt).

    Ids: VOC train v0..v{n-1}; VOC val w0..; SBD train s0.., SBD val t0..; SBD also lists
    the first VOC train and the first VOC val image (the overlap train_aug must resolve:
    the VOC train one keeps its VOC label, the VOC val one is left out).
    """
    release = released.VOC
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    names = {"voc_train": [f"2007_{i:06d}" for i in range(images)],
             "voc_val": [f"2008_{i:06d}" for i in range(images)],
             "sbd_train": [f"2009_{i:06d}" for i in range(images)],
             "sbd_val": [f"2010_{i:06d}" for i in range(images)]}
    palette = voc_palette()
    for group_index, (group, ids) in enumerate(names.items()):
        for index, image, raw in _scenes(release.name, len(ids), size, seed + group_index,
                                         release.label_values, 255):
            image_id = ids[index]
            _save(image, voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
            if group.startswith("voc"):
                label = Image.fromarray(raw.astype(np.uint8), mode="P")
                label.putpalette(palette)
                (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
                label.save(voc / "SegmentationClass" / f"{image_id}.png")
            else:
                _save(image, sbd / "img" / f"{image_id}.jpg", quality=95)
                write_sbd_mat(sbd / "cls" / f"{image_id}.mat", np.where(raw == 255, 0, raw))
    # SBD's own label for the shared VOC images (their VOC labels must win or exclude them).
    for image_id in (names["voc_train"][0], names["voc_val"][0]):
        write_sbd_mat(sbd / "cls" / f"{image_id}.mat",
                      np.full(np.asarray(Image.open(voc / "JPEGImages" / f"{image_id}.jpg"))
                              .shape[:2], 5, np.uint8))
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("\n".join(names["voc_train"]) + "\n")
    (lists / "val.txt").write_text("\n".join(names["voc_val"]) + "\n")
    (lists / "trainval.txt").write_text("\n".join(names["voc_train"] + names["voc_val"]) + "\n")
    (sbd / "train.txt").write_text("\n".join(names["sbd_train"] + names["voc_val"][:1]) + "\n")
    (sbd / "val.txt").write_text("\n".join(names["sbd_val"] + names["voc_train"][:1]) + "\n")
    return root


def write_coco_stuff(root: Path, *, images: int = 2, size=(64, 64), seed: int = 0) -> Path:
    """images/{train2017,val2017}/<12-digit id>.jpg + annotations/{...}/<id>.png (0..181, 255)."""
    release = released.COCO_STUFF
    for split_index, folder in enumerate(("train2017", "val2017")):
        for index, image, raw in _scenes(release.name, images, size, seed + split_index,
                                         release.label_values, 255):
            stem = f"{(split_index * 1000 + index + 9):012d}"
            _save(image, root / "images" / folder / f"{stem}.jpg", quality=95)
            _save(raw.astype(np.uint8), root / "annotations" / folder / f"{stem}.png")
    return root


def write_msd_brain_tumour(root: Path, *, images: int = 2, size=(16, 32, 32), seed: int = 0
                           ) -> Path:
    """Task01_BrainTumour/{imagesTr,labelsTr,imagesTs}/BRATS_<nnn>.nii.gz: 4 modalities,
    channels last, a bright 'tumour' of labels 1..3 inside a zero-background 'brain'."""
    import nibabel

    task = root / "Task01_BrainTumour"
    rng = np.random.default_rng(seed)
    depth, height, width = size
    grid = np.indices(size).astype(np.float32)
    for folder, start in (("imagesTr", 1), ("imagesTs", 485)):
        (task / folder).mkdir(parents=True, exist_ok=True)
        count = images if folder == "imagesTr" else 1
        for number in range(start, start + count):
            centre = rng.uniform(0.35, 0.65, 3) * np.array(size)
            distance = np.sqrt((((grid - centre[:, None, None, None]) /
                                 np.array(size)[:, None, None, None] * 4) ** 2).sum(0))
            brain = distance < 1.8
            label = np.zeros(size, np.uint8)
            label[distance < 1.0] = 1          # edema
            label[distance < 0.6] = 2          # non-enhancing tumour
            label[distance < 0.3] = 3          # enhancing tumour
            image = np.stack([brain * (40 + 30 * label + rng.normal(0, 5, size) + 10 * m)
                              for m in range(4)], axis=-1).astype(np.float32)
            name = f"BRATS_{number:03d}.nii.gz"
            nibabel.save(nibabel.Nifti1Image(image, np.eye(4)), str(task / folder / name))
            if folder == "imagesTr":
                (task / "labelsTr").mkdir(exist_ok=True)
                nibabel.save(nibabel.Nifti1Image(label, np.eye(4)),
                             str(task / "labelsTr" / name))
    (task / "dataset.json").write_text(json.dumps({"name": "BRATS", "modality": {
        "0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}))
    return root


WRITERS = {"cityscapes_semantic": write_cityscapes,
           "cityscapes_panoptic": write_cityscapes_panoptic, "ade20k_sceneparsing": write_ade20k,
           "voc2012_aug": write_voc, "coco_stuff164k": write_coco_stuff,
           "msd_brain_tumour": write_msd_brain_tumour}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(WRITERS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--images", type=int, default=2, help="images per split")
    parser.add_argument("--size", default="", help="HxW (or DxHxW for msd_brain_tumour)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = {"images": args.images, "seed": args.seed}
    if args.size:
        options["size"] = tuple(int(v) for v in args.size.split("x"))
    WRITERS[args.name](args.out, **options)
    print(f"wrote {args.name} ({args.images} images per split) into {args.out}")


if __name__ == "__main__":
    main()
