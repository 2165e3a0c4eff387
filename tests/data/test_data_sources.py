"""Sources: ISBI read numerically sorted and mapped to class indices; clear errors on bad input."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segjax.config import base_config
from segjax.data import sources
from segjax.data.sources import FolderSource, SyntheticSource, make_source


def _write(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _folder(tmp_path, images, labels=None, split="train"):
    for name, array in images.items():
        _write(tmp_path / split / "images" / name, array)
    for name, array in (labels or {}).items():
        _write(tmp_path / split / "labels" / name, array)
    return tmp_path


def test_isbi_split_order_and_label_mapping(isbi_root):
    held_out = FolderSource(isbi_root, "train[25:30]", image_channels=1, label_values=(0, 255))
    assert [held_out[i]["name"] for i in range(len(held_out))] == [f"{i}.png" for i in
                                                                   range(25, 30)]
    train = FolderSource(isbi_root, "train[:25]", image_channels=1, label_values=(0, 255))
    assert len(train) == 25 and train[10]["name"] == "10.png"
    example = held_out[0]
    assert example["image"].shape == (512, 512, 1) and example["image"].dtype == np.uint8
    assert example["label"].shape == (512, 512) and example["label"].dtype == np.int32
    raw = np.asarray(Image.open(isbi_root / "train" / "labels" / "25.png"))
    np.testing.assert_array_equal(example["label"], (raw == 255).astype(np.int32))
    np.testing.assert_array_equal(example["image"][..., 0],
                                  np.asarray(Image.open(isbi_root / "train" / "images" / "25.png")))


def test_split_without_labels_reads_images_only(isbi_root):
    test = FolderSource(isbi_root, "test[:2]", image_channels=1, label_values=(0, 255))
    assert len(test) == 2 and not test.has_labels
    assert test[1]["label"] is None and test[1]["image"].shape == (512, 512, 1)


def test_lexical_order_ignore_values_and_identity_mapping(tmp_path):
    label = np.array([[0, 1], [11, 2]])
    root = _folder(tmp_path, {"b.png": np.zeros((2, 2)), "a.png": np.ones((2, 2)),
                              "10.png": np.ones((2, 2))},
                   {"b.png": label, "a.png": label, "10.png": label})
    source = FolderSource(root, "train", image_channels=1, ignore_values=(11,), ignore_index=255)
    assert [source[i]["name"] for i in range(3)] == ["10.png", "a.png", "b.png"]
    np.testing.assert_array_equal(source[0]["label"], [[0, 1], [255, 2]])


def test_label_values_and_ignore_values_map_raw_to_classes(tmp_path):
    root = _folder(tmp_path, {"0.png": np.zeros((2, 3))}, {"0.png": [[0, 255, 128], [255, 0, 0]]})
    source = FolderSource(root, "train", image_channels=1, label_values=(0, 255),
                          ignore_values=(128,), ignore_index=7)
    np.testing.assert_array_equal(source[0]["label"], [[0, 1, 7], [1, 0, 0]])


@pytest.mark.parametrize("case, match", [
    ("no_root", "data.root"),
    ("no_images", "no images folder"),
    ("bad_value", r"3\.png.*\[128\].*\(0, 255\)"),
    ("size", r"label size \(4, 4\) != image size \(4, 5\)"),
    ("channels", "data.image_channels=1"),
    ("split", "not of the form"),
])
def test_bad_input_errors_name_the_problem(tmp_path, case, match):
    image, label = np.zeros((4, 5)), np.zeros((4, 5))
    kwargs = dict(image_channels=1, label_values=(0, 255))
    split = "train"
    if case == "no_root":
        root = tmp_path / "missing"
    elif case == "no_images":
        root = tmp_path
        (root / "train").mkdir()
    elif case == "bad_value":
        root = _folder(tmp_path, {"3.png": image}, {"3.png": np.full((4, 5), 128)})
    elif case == "size":
        root = _folder(tmp_path, {"0.png": image}, {"0.png": np.zeros((4, 4))})
    elif case == "channels":
        root = _folder(tmp_path, {"0.png": np.zeros((4, 5, 3))}, {"0.png": label})
    else:
        root, split = _folder(tmp_path, {"0.png": image}, {"0.png": label}), "train[1-2]"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        source = FolderSource(root, split, **kwargs)
        source[0]


def test_unpaired_files_are_left_out_with_a_warning_naming_them(tmp_path):
    image = np.zeros((4, 5))
    root = _folder(tmp_path, {"0.png": image, "1.png": image}, {"0.png": image, "7.png": image})
    with pytest.warns(UserWarning) as record:
        source = FolderSource(root, "train", image_channels=1, label_values=(0,))
    messages = [str(w.message) for w in record]
    assert any("1 image(s) without a label" in m and "1.png" in m for m in messages)
    assert any("1 label(s) without an image" in m and "7.png" in m for m in messages)
    assert len(source) == 1 and source[0]["name"] == "0.png"


def test_a_stray_file_cannot_reorder_the_split(isbi_root, tmp_path):
    """ISBI plus train/images/x.png: train[25:30] stays slices 25-29; the junk is named."""
    import shutil
    copy = tmp_path / "isbi"
    shutil.copytree(isbi_root, copy)
    (copy / "train" / "images" / "x.png").write_text("junk\n")
    (copy / "train" / "labels" / "x.png").write_text("junk\n")
    with pytest.raises(ValueError, match=r"not readable images.*images/x\.png.*labels/x\.png"):
        FolderSource(copy, "train[25:30]", image_channels=1, label_values=(0, 255))
    (copy / "train" / "labels" / "x.png").unlink()
    (copy / "train" / "images" / "x.png").unlink()
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(copy / "train" / "images" / "x.png")
    with pytest.warns(UserWarning, match="without a label.*x.png"):
        held_out = FolderSource(copy, "train[25:30]", image_channels=1, label_values=(0, 255))
    assert [p.name for p in held_out.image_paths] == [f"{i}.png" for i in range(25, 30)]


def test_natural_sort():
    names = ["frame10.png", "x.png", "frame2.png", "10.png", "9.png", "Frame3.png", "1.png"]
    assert sources.sort_names(names) == ["1.png", "9.png", "10.png", "frame2.png", "Frame3.png",
                                         "frame10.png", "x.png"]


def test_parse_split():
    assert sources.parse_split("train[25:30]") == ("train", slice(25, 30))
    assert sources.parse_split("train[:25]") == ("train", slice(None, 25))
    assert sources.parse_split("val") == ("val", slice(None, None))


def test_synthetic_is_deterministic_and_label_follows_image():
    source = SyntheticSource(4, 48, 40, channels=2, num_classes=3, seed=5)
    first, again = source[2], SyntheticSource(4, 48, 40, 2, 3, seed=5)[2]
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["label"], again["label"])
    assert first["image"].shape == (48, 40, 2) and set(np.unique(first["label"])) <= {0, 1, 2}
    means = {c: first["image"][first["label"] == c].mean() for c in np.unique(first["label"])}
    assert abs(means[0] - 20) < 3 and all(abs(m - (40 + 200 * c / 3)) < 3 for c, m in
                                          means.items() if c)
    assert not np.array_equal(source[0]["label"], source[1]["label"])


def test_make_source_by_config(isbi_root):
    config = base_config().data
    config.source, config.root, config.image_channels = "folder", str(isbi_root), 1
    config.label_values = (0, 255)
    assert len(make_source(config, "train[25:30]")) == 5
    config.source = "synthetic"
    config.synthetic.num_examples = 6
    assert len(make_source(config, "train[:4]")) == 4
    config.source = "csv"
    with pytest.raises(ValueError, match="cityscapes_semantic, .*folder, .*stack, synthetic, tfds, tfds_volume, voc2012_aug, volume"):
        make_source(config, "train")


def _isbi_like(root: Path, count: int = 30) -> Path:
    """An ISBI-shaped folder of `count` 8x8 slices (labels raw 0 / 255)."""
    rng = np.random.default_rng(0)
    for index in range(count):
        _write(root / "train" / "images" / f"{index}.png", rng.integers(0, 256, (8, 8)))
        _write(root / "train" / "labels" / f"{index}.png", 255 * rng.integers(0, 2, (8, 8)))
    return root


def _isbi_config(root: Path):
    config = base_config().data
    from segjax.data import datasets
    datasets.apply("isbi2012_em", config)
    config.root = str(root)
    return config


def test_a_known_dataset_with_a_missing_label_is_an_error(tmp_path):
    """Before: a warning, and train[:25] then held slice 25 (the boundaries moved)."""
    root = _isbi_like(tmp_path / "isbi")
    (root / "train" / "labels" / "1.png").unlink()
    with pytest.raises(sources.datasets.DataError,
                       match=rf"{root}/train/labels holds 29 image files, expected 30 for the "
                             r"isbi2012_em dataset .*split 'train\[:25\]'"):
        make_source(_isbi_config(root), "train[:25]")


def test_a_known_dataset_with_an_extra_pair_is_an_error(tmp_path):
    """Before: train[25:30] silently became slices 25-29 of 31 and slice 30 joined no split."""
    root = _isbi_like(tmp_path / "isbi", 31)
    with pytest.raises(sources.datasets.DataError,
                       match=rf"{root}/train/images holds 31 image files, expected 30"):
        make_source(_isbi_config(root), "train[25:30]")


def test_split_lists_select_files_by_name(tmp_path):
    import json
    root = _isbi_like(tmp_path / "isbi")
    lists = tmp_path / "splits.json"
    lists.write_text(json.dumps({"val": ["train/images/7.png", "train/images/3.png"],
                                 "gone": ["train/images/3.png", "train/images/40.png"]}))
    config = _isbi_config(root)
    config.split_lists = str(lists)
    val = make_source(config, "val")
    assert [val[i]["name"] for i in range(len(val))] == ["7.png", "3.png"]
    assert sources.split_files(val) == ["train/images/7.png", "train/images/3.png"]
    assert sources.split_files(make_source(config, "val[1:]")) == ["train/images/3.png"]
    np.testing.assert_array_equal(
        val[1]["label"],
        (np.asarray(Image.open(root / "train" / "labels" / "3.png")) == 255).astype(np.int32))
    with pytest.raises(sources.datasets.DataError,
                       match=r"split 'gone' of data.split_lists: 1 listed file\(s\) missing: "
                             rf"{root}/train/images/40.png"):
        make_source(config, "gone")
    (root / "train" / "labels" / "7.png").unlink()  # a listed split needs no count check
    with pytest.raises(sources.datasets.DataError, match=r"labels/7\.\* \(the label of "
                                                         r"train/images/7.png\)"):
        make_source(config, "val")
