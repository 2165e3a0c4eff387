"""Panoptic data: instance maps, Panoptic-DeepLab targets, augmentation consistency, sources."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from segjax import config as config_lib
from segjax.data import panoptic, pipeline, sources, transforms


def test_connected_instances_keep_diagonal_neighbours_apart():
    label = np.array([[1, 1, 0, 0],
                      [1, 1, 0, 2],
                      [0, 0, 1, 2],
                      [0, 0, 1, 0]])
    instance = panoptic.connected_instances(label, thing_classes=(1, 2))
    assert instance.tolist() == [[1, 1, 0, 0],
                                 [1, 1, 0, 3],
                                 [0, 0, 2, 3],
                                 [0, 0, 2, 0]]
    eight = panoptic.connected_instances(label, thing_classes=(1,), connectivity=2)
    assert set(np.unique(eight)) == {0, 1}


def test_targets_by_hand():
    label = np.zeros((40, 40), np.int32)
    instance = np.zeros((40, 40), np.int32)
    label[10:13, 20:24] = 1                  # 3 x 4 instance: centroid (11, 21.5) -> (11, 22)
    instance[10:13, 20:24] = 7
    label[0, 0] = 255
    targets = panoptic.panoptic_targets(label, instance, sigma=2.0, small_instance_area=13,
                                        small_instance_weight=3.0)
    assert targets["center"][11, 22] == 1.0
    assert targets["center"].max() == 1.0
    np.testing.assert_allclose(targets["center"][11, 25], np.exp(-9 / 8), rtol=1e-6)
    assert targets["center"][11, 22 + 8] == 0.0          # beyond the 3 sigma + 1 = 7 cut
    assert targets["offset"][10, 20].tolist() == [1.0, 2.0]
    assert targets["offset"][12, 23].tolist() == [-1.0, -1.0]
    assert np.all(targets["offset"][instance == 0] == 0)
    assert targets["offset_weight"].sum() == 12
    assert targets["center_weight"][0, 0] == 0 and targets["center_weight"].sum() == 1599
    assert np.all(targets["semantic_weight"][instance == 7] == 3.0)  # 12 pixels < 13
    assert targets["semantic_weight"].sum() == 1600 + 2 * 12
    larger = panoptic.panoptic_targets(label, instance, sigma=2.0, small_instance_area=12)
    assert larger["semantic_weight"].max() == 1.0


def _blobs(seed=0, size=48):
    """An image whose label has 'interior' blobs (class 1) on 'membrane' (class 0)."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.int32)
    rows, cols = np.indices((size, size))
    for _ in range(6):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 8)
        label[(rows - cy) ** 2 + (cols - cx) ** 2 < r ** 2] = 1
    image = (label[..., None] * 150 + rng.integers(0, 50, (size, size, 1))).astype(np.uint8)
    return image, label


def _check_targets_match_instances(example, thing_class=1):
    """Every thing pixel points at its instance's centre, where the heatmap peaks at 1."""
    offset_weight = example["offset_weight"]
    assert np.all((offset_weight > 0) == (example["label"] == thing_class))
    rows, cols = np.nonzero(offset_weight)
    targets = np.stack([rows, cols], -1) + example["offset"][rows, cols].astype(int)
    assert np.all(example["center"][targets[:, 0], targets[:, 1]] == 1.0)


def test_augmented_instances_move_with_labels():
    image, label = _blobs()
    instance = panoptic.connected_instances(label, (1,))
    augment = ml_collections.ConfigDict(dict(hflip=True, vflip=True, rot90=True, scale=(0.8, 1.2),
                                             rotate_degrees=20.0, elastic_sigma=0.0,
                                             elastic_grid=3, brightness=0.0, contrast=0.0))
    for seed in range(6):
        rng = np.random.default_rng(seed)
        example = {"image": image, "label": label, "instance": instance}
        example = transforms.augment(rng, example, augment, ignore_index=255)
        example = transforms.mirror_pad(example, 3, ignore_index=255)
        example = transforms.random_crop(rng, example, (40, 56), ignore_index=255)
        assert example["instance"].shape == example["label"].shape == (40, 56)
        assert np.all((example["instance"] > 0) == (example["label"] == 1))
        example.update(panoptic.panoptic_targets(example["label"], example["instance"]))
        _check_targets_match_instances(example)


@pytest.fixture
def blob_folder(tmp_path):
    for split, count in (("train", 4),):
        for folder in ("images", "labels"):
            (tmp_path / split / folder).mkdir(parents=True)
        for index in range(count):
            image, label = _blobs(seed=index)
            Image.fromarray(image[..., 0]).save(tmp_path / split / "images" / f"{index}.png")
            Image.fromarray((label * 255).astype(np.uint8)).save(
                tmp_path / split / "labels" / f"{index}.png")
    return tmp_path


def _panoptic_data_config(root):
    config = config_lib.base_config()
    data = config.data
    data.source, data.root, data.image_channels = "panoptic_folder", str(root), 1
    data.label_values, data.train_split = (0, 255), "train"
    data.crop, data.batch_size = (32, 32), 2
    data.augment.rot90 = True
    data.augment.vflip = True
    data.panoptic.thing_classes = (1,)
    return data


def test_train_batches_carry_targets(blob_folder):
    data = _panoptic_data_config(blob_folder)
    dataset = pipeline.train_dataset(data, seed=3)
    for step in range(3):
        batch = dataset[step]
        assert "instance" not in batch
        assert batch["center"].shape == batch["label"].shape == (2, 32, 32)
        assert batch["offset"].shape == (2, 32, 32, 2)
        for name in panoptic.TARGET_KEYS:
            assert batch[name].dtype == np.float32, name
        for index in range(2):
            _check_targets_match_instances({key: batch[key][index] for key in batch})


def test_panoptic_folder_reads_an_instances_folder(blob_folder):
    (blob_folder / "train" / "instances").mkdir()
    for index in range(4):
        ids = np.zeros((48, 48), np.uint16)
        ids[5:9, 5:9] = 300 + index
        Image.fromarray(ids).save(blob_folder / "train" / "instances" / f"{index}.png")
    source = sources.make_source(_panoptic_data_config(blob_folder), "train[1:3]")
    example = source[1]
    assert example["instance"].dtype == np.int32
    assert set(np.unique(example["instance"])) == {0, 302}


def test_panoptic_folder_needs_thing_classes(blob_folder):
    data = _panoptic_data_config(blob_folder)
    data.panoptic.thing_classes = ()
    with pytest.raises(ValueError, match="thing_classes is empty"):
        sources.make_source(data, "train")


def test_isbi_cells_are_interior_components(isbi_root):
    config = config_lib.base_config()
    from segjax.data import datasets
    datasets.apply("isbi2012_em", config.data)
    config.data.source = "panoptic_folder"
    config.data.root = str(isbi_root)
    config.data.panoptic.thing_classes = (1,)
    example = sources.make_source(config.data, "train[0:1]")[0]
    instance, label = example["instance"], example["label"]
    assert np.all((instance > 0) == (label == 1))
    assert instance.max() > 50                  # many cells on one 512 x 512 slice
    targets = panoptic.panoptic_targets(label, instance)
    assert targets["center"].max() == 1.0
