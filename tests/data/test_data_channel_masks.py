"""Channel-stack (multi-label / binary) masks: the folder source reads them in every storage
form, the transforms move every channel with the image, and the pipeline batches them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segjax.config import base_config
from segjax.data import pipeline, sources, transforms

IGNORE = 255


def write_dataset(root, masks: dict[str, np.ndarray], writer) -> None:
    """<root>/train/images/<name>.png and labels written by `writer(path_stem, masks)`."""
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    for name, stack in masks.items():
        height, width = stack.shape[:2]
        Image.fromarray(np.full((height, width), 100, np.uint8)).save(
            root / "train" / "images" / f"{name}.png")
        writer(root / "train" / "labels" / name, stack)


def multipage_tiff(stem, stack):
    pages = [Image.fromarray(stack[..., k]) for k in range(stack.shape[-1])]
    pages[0].save(f"{stem}.tif", save_all=True, append_images=pages[1:])


def rgb_png(stem, stack):
    Image.fromarray(stack).save(f"{stem}.png")


def npy(stem, stack):
    np.save(f"{stem}.npy", stack)


def stacks(channels, raw_on=1, seed=0):
    rng = np.random.default_rng(seed)
    return {f"s{i}": (rng.random((6, 7, channels)) < 0.4).astype(np.uint8) * raw_on
            for i in range(2)}


@pytest.mark.parametrize("writer,channels", [(multipage_tiff, 5), (rgb_png, 3), (npy, 4)])
def test_folder_source_reads_channel_stacks(tmp_path, writer, channels):
    masks = stacks(channels)
    write_dataset(tmp_path, masks, writer)
    source = sources.FolderSource(tmp_path, "train", image_channels=1, label_format="channels")
    for index, name in enumerate(sorted(masks)):
        example = source[index]
        assert example["label"].dtype == np.int32
        np.testing.assert_array_equal(example["label"], masks[name])


def test_binary_masks_map_raw_values_and_ignore_values(tmp_path):
    """One 0/255 channel with 128 for void: label_values (0, 255) and ignore_values (128,)."""
    mask = np.array([[0, 255, 128], [255, 0, 0]], np.uint8)
    write_dataset(tmp_path, {"a": mask[..., None]}, lambda stem, s: Image.fromarray(
        s[..., 0]).save(f"{stem}.png"))
    source = sources.FolderSource(tmp_path, "train", image_channels=1, label_format="channels",
                                  label_values=(0, 255), ignore_values=(128,))
    np.testing.assert_array_equal(source[0]["label"][..., 0],
                                  [[0, 1, IGNORE], [1, 0, 0]])
    raw = sources.FolderSource(tmp_path, "train", image_channels=1, label_format="channels")
    with pytest.raises(ValueError, match=r"mask values \[128, 255\] are not 0/1; set "
                                         r"data.label_values"):
        raw[0]
    with pytest.raises(ValueError, match="channel masks take two raw values"):
        sources.FolderSource(tmp_path, "train", image_channels=1, label_format="channels",
                             label_values=(0, 128, 255))
    with pytest.raises(ValueError, match="label_format must be one of"):
        sources.LabelSpec(1, label_format="stack")


def test_transforms_move_every_channel_with_the_image():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (9, 11, 1)).astype(np.float32)
    # channel c marks where the image is above a channel-specific level: a channel moved
    # differently from the image breaks the relation
    levels = np.array([60.0, 120.0, 180.0])
    label = (image > levels).astype(np.int32)
    example = {"image": image, "label": label}
    config = base_config().data.augment
    config.unlock()
    config.update(hflip=True, vflip=True, rot90=True)
    for seed in range(4):
        out = transforms.augment(np.random.default_rng(seed), example, config,
                                 ignore_index=IGNORE)
        np.testing.assert_array_equal(out["label"], (out["image"] > levels).astype(np.int32))
    config.update(scale=(1.5, 1.5), rotate_degrees=30.0, elastic_sigma=3.0)
    for seed in range(3):
        out = transforms.augment(np.random.default_rng(seed), example, config,
                                 ignore_index=IGNORE)
        assert out["label"].shape == out["image"].shape[:2] + (3,)
        assert set(np.unique(out["label"])) <= {0, 1, IGNORE}    # nearest: never blended
    flipped = transforms.flip(example, 1)
    np.testing.assert_array_equal(flipped["label"], label[:, ::-1])
    padded = transforms.mirror_pad(example, 2, ignore_index=IGNORE)
    assert padded["label"].shape == (13, 15, 3)
    assert np.all(padded["label"][:2] == IGNORE) and np.all(padded["label"][:, -2:] == IGNORE)
    np.testing.assert_array_equal(padded["label"][2:-2, 2:-2], label)
    cropped = transforms.random_crop(np.random.default_rng(0), example, (12, 8),
                                     ignore_index=IGNORE)
    assert cropped["label"].shape == (12, 8, 3) and np.all(cropped["label"][9:] == IGNORE)
    scaled = transforms.random_scale(np.random.default_rng(0), example, scale_range=(2.0, 2.0))
    np.testing.assert_array_equal(scaled["label"][::2, ::2], label)


def test_pipeline_batches_channel_masks_and_refuses_the_weight_map(tmp_path):
    masks = stacks(2, raw_on=255, seed=2)
    write_dataset(tmp_path, masks, npy)
    config = base_config().data
    config.root = str(tmp_path)
    config.image_channels = 1
    config.label_format = "channels"
    config.label_values = (0, 255)
    config.crop = (4, 4)
    config.batch_size = 2
    config.train_split = "train"
    batch = next(iter(pipeline.train_dataset(config, seed=0)))
    assert batch["label"].shape == (2, 4, 4, 2) and batch["label"].dtype == np.int32
    assert set(np.unique(batch["label"])) <= {0, 1}
    config.weight_map.enabled = True
    with pytest.raises(ValueError, match="channel-stack masks"):
        next(iter(pipeline.train_dataset(config, seed=0)))
