"""Panoptic tfds builders (Cityscapes, COCO) from tiny local fixtures, read back as sources."""

import json

import numpy as np
import pytest
from PIL import Image

from segjax.config import base_config
from segjax.data import sources


def _write_panoptic_png(path, segment_ids):
    rgb = np.stack([segment_ids % 256, segment_ids // 256 % 256, segment_ids // 65536], -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def _scene(index):
    """Segment ids on 8 x 12: stuff 1, two things 2 and 3, a crowd 4, VOID 0."""
    ids = np.full((8, 12), 1000 + index, np.int64)
    ids[1:4, 1:4] = 2000 + index
    ids[5:8, 6:10] = 3000 + index
    ids[0:2, 9:12] = 4000 + index
    ids[7, 0:2] = 0
    return ids


def _segments(index, stuff, thing):
    return [{"id": 1000 + index, "category_id": stuff, "iscrowd": 0},
            {"id": 2000 + index, "category_id": thing, "iscrowd": 0},
            {"id": 3000 + index, "category_id": thing, "iscrowd": 0},
            {"id": 4000 + index, "category_id": thing, "iscrowd": 1}]


def _check_record(example, stuff_class, thing_class):
    label, instance = example["label"], example["instance"]
    assert label.shape == instance.shape == (8, 12)
    assert label[0, 0] == stuff_class and label[2, 2] == thing_class
    assert label[7, 0] == 255 and label[0, 10] == 255             # VOID and crowd
    assert set(np.unique(instance)) == {0, 1, 2}
    assert instance[2, 2] == 1 and instance[6, 7] == 2 and instance[0, 10] == 0


def _data_config(name, root):
    data = base_config().data
    data.source, data.tfds_name, data.root, data.image_channels = ("panoptic_tfds", name,
                                                                   str(root), 3)
    return data


def test_cityscapes_panoptic_from_a_local_folder(tmp_path):
    from segjax.data.builders import cityscapes_panoptic, prepare

    local = tmp_path / "cityscapes"
    categories = [{"id": cid, "name": name, "isthing": int(index >= 11)}
                  for index, (cid, name) in enumerate(zip(
                      (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33),
                      cityscapes_panoptic.CLASS_NAMES))]
    for split, count in (("train", 2), ("val", 1)):
        annotations = []
        for index in range(count):
            stem = f"aachen_{index:06d}_000019"
            image = np.full((8, 12, 3), 10 * index + 1, np.uint8)
            (local / "leftImg8bit" / split / "aachen").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(local / "leftImg8bit" / split / "aachen"
                                        / f"{stem}_leftImg8bit.png")
            name = f"{stem}_gtFine_panoptic.png"
            _write_panoptic_png(local / "gtFine" / f"cityscapes_panoptic_{split}" / name,
                                _scene(index))
            annotations.append({"image_id": stem, "file_name": name,
                                "segments_info": _segments(index, stuff=8, thing=26)})
        (local / "gtFine" / f"cityscapes_panoptic_{split}.json").write_text(json.dumps(
            {"annotations": annotations, "categories": categories}))
    prepare("cityscapes_panoptic", local_dir=local, data_dir=tmp_path / "tfds")
    train = sources.make_source(_data_config("cityscapes_panoptic", tmp_path / "tfds"), "train")
    assert len(train) == 2 and train[1]["name"] == "aachen_000001_000019_leftImg8bit.png"
    np.testing.assert_array_equal(train[1]["image"], 11)
    _check_record(train[1], stuff_class=1, thing_class=13)       # sidewalk, car
    val = sources.make_source(_data_config("cityscapes_panoptic", tmp_path / "tfds"), "val")
    _check_record(val[0], stuff_class=1, thing_class=13)


def test_coco_panoptic_from_a_local_folder(tmp_path):
    from segjax.data.builders import prepare
    import tensorflow_datasets as tfds

    local = tmp_path / "coco"
    categories = [{"id": 1, "name": "person", "isthing": 1},
                  {"id": 3, "name": "car", "isthing": 1},
                  {"id": 184, "name": "tree-merged", "isthing": 0},
                  {"id": 200, "name": "rug-merged", "isthing": 0}]
    for split, count in (("train", 1), ("val", 2)):
        images, annotations = [], []
        for index in range(count):
            image_id = 139 + index
            (local / f"{split}2017").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 12, 3), 5 + index, np.uint8)).save(
                local / f"{split}2017" / f"{image_id:012d}.jpg", quality=100)
            _write_panoptic_png(local / "annotations" / f"panoptic_{split}2017"
                                / f"{image_id:012d}.png", _scene(index))
            images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg"})
            annotations.append({"image_id": image_id, "file_name": f"{image_id:012d}.png",
                                "segments_info": _segments(index, stuff=200, thing=3)})
        (local / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    prepare("coco_panoptic", local_dir=local, data_dir=tmp_path / "tfds")
    val = sources.make_source(_data_config("coco_panoptic", tmp_path / "tfds"), "val")
    assert len(val) == 2 and val[0]["name"] == "000000000139.jpg"
    _check_record(val[1], stuff_class=3, thing_class=1)           # rug-merged, car
    info = tfds.builder("coco_panoptic", data_dir=str(tmp_path / "tfds")).info
    assert info.metadata["class_names"] == ["person", "car", "tree-merged", "rug-merged"]
    assert info.metadata["thing_classes"] == [0, 1]


def test_unknown_category_is_an_error():
    from segjax.data.builders import panoptic_format

    with pytest.raises(ValueError, match="category 5, which is not among"):
        panoptic_format.semantic_and_instance(
            np.ones((2, 2), np.int64), [{"id": 1, "category_id": 5}],
            [{"id": 1, "name": "a", "isthing": 0}], "here")
