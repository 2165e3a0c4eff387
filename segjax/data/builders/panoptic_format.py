"""What the panoptic tfds builders share: COCO's panoptic format -> semantic + instance maps.

COCO and Cityscapes distribute panoptic ground truth in COCO's panoptic
format: a PNG per image whose RGB encodes a segment id (R + 256 G + 256^2 B,
0 = VOID) and a JSON file listing, per image, its segments (id, category_id,
iscrowd) and the categories (id, name, isthing).

The builders store each example as encoded bytes (no TensorFlow needed to
write or read them), converted once at build time:

    'image'     the image file's bytes, unchanged
    'label'     8-bit PNG of class indices (categories sorted by id -> 0..K-1),
                255 on VOID and on crowd segments
    'instance'  16-bit PNG of instance ids: 1..n for the non-crowd thing segments
                of the image, 0 elsewhere
    'name'      the image's file name

Crowd regions become void (255) rather than a separate crowd map: they are
then ignored by the loss and, as VOID, by panoptic quality, which the
official evaluation does too except that it also excuses predictions
overlapping a crowd region of their own class (a slightly stricter PQ here).
The "panoptic_tfds" source (`segjax.data.panoptic`) reads these records.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

VOID = 255
MAX_INSTANCES = 65535


def record_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "label": tfds.features.Tensor(shape=(), dtype=np.object_),
        "instance": tfds.features.Tensor(shape=(), dtype=np.object_),
        "name": tfds.features.Text(),
    })


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG (H, W, 3) -> segment ids (H, W)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def class_table(categories: list[dict]) -> dict[int, int]:
    """category id -> class index, categories sorted by id."""
    return {int(c["id"]): index for index, c in
            enumerate(sorted(categories, key=lambda c: int(c["id"])))}


def thing_classes(categories: list[dict]) -> tuple[int, ...]:
    table = class_table(categories)
    return tuple(sorted(table[int(c["id"])] for c in categories if c.get("isthing")))


def class_names(categories: list[dict]) -> tuple[str, ...]:
    return tuple(c["name"] for c in sorted(categories, key=lambda c: int(c["id"])))


def semantic_and_instance(segment_ids: np.ndarray, segments: list[dict],
                          categories: list[dict], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(label uint8, instance uint16) of one image's segment-id map and segment list."""
    table = class_table(categories)
    is_thing = {int(c["id"]): bool(c.get("isthing")) for c in categories}
    label = np.full(segment_ids.shape, VOID, np.uint8)
    instance = np.zeros(segment_ids.shape, np.uint16)
    count = 0
    for segment in segments:
        category = int(segment["category_id"])
        if category not in table:
            raise ValueError(f"{where}: segment {segment['id']} has category {category}, which "
                             "is not among the JSON's categories")
        mask = segment_ids == int(segment["id"])
        if segment.get("iscrowd"):
            continue  # crowd: void (module docstring)
        label[mask] = table[category]
        if is_thing[category]:
            count += 1
            if count > MAX_INSTANCES:
                raise ValueError(f"{where}: more than {MAX_INSTANCES} instances")
            instance[mask] = count
    return label, instance


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_panoptic_json(path: Path) -> dict:
    with open(path) as file:
        data = json.load(file)
    for key in ("annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path}: not a COCO panoptic JSON (no '{key}')")
    return data


def examples(data: dict, image_path, panoptic_dir: Path, where: str
             ) -> Iterator[tuple[str, dict]]:
    """(key, record) per annotation; `image_path(annotation)` finds the image file."""
    categories = data["categories"]
    for annotation in sorted(data["annotations"], key=lambda a: str(a["file_name"])):
        png = Path(panoptic_dir) / annotation["file_name"]
        with Image.open(png) as panoptic:
            segment_ids = rgb_to_id(np.asarray(panoptic.convert("RGB")))
        label, instance = semantic_and_instance(segment_ids, annotation["segments_info"],
                                                categories, f"{where} {png.name}")
        image = Path(image_path(annotation))
        if not image.is_file():
            raise FileNotFoundError(f"{where}: image {image} of {png.name} is missing")
        yield image.name, {"image": image.read_bytes(), "label": png_bytes(label),
                           "instance": png_bytes(instance), "name": image.name}
