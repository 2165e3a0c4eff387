"""The released-layout sources (segjax.data.released) on tiny copies written in each dataset's
exact layout (tests/data/layouts.py): known pixels map to the right class, the splits hold
the right files, stray and missing files are errors naming them, and the tfds builders give
the same examples."""

import numpy as np
import pytest
from PIL import Image

from segjax.config import base_config
from segjax.data import released, sources
from tests.data import layouts

NAMES = ("cityscapes_semantic", "ade20k_sceneparsing", "voc2012_aug", "coco_stuff164k")


def data_config(name, root):
    data = base_config().data
    released.apply(name, data)
    data.root = str(root)
    return data


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {name: layouts.WRITERS[name](tmp_path_factory.mktemp(name), images=3)
            for name in NAMES}


def test_release_tables():
    city = released.CITYSCAPES
    assert len(city.class_names) == 19 and city.class_names[0] == "road"
    assert city.label_values[:3] == (7, 8, 11) and city.label_values[-1] == 33
    assert sorted(city.label_values + city.ignore_values) == list(range(34))
    assert len(released.ADE20K.class_names) == 150 == len(set(released.ADE20K.class_names))
    assert released.ADE20K.class_names[:3] == ("wall", "building", "sky")
    coco = released.COCO_STUFF
    assert len(coco.class_names) == 171 and coco.class_names[80] == "banner"
    assert 11 not in coco.label_values and coco.label_values[-1] == 181
    assert len(released.VOC.class_names) == 21


@pytest.mark.parametrize("name", NAMES)
def test_known_pixels_map_to_their_class(name, roots):
    data = data_config(name, roots[name])
    assert data.source == name and tuple(data.class_names) == released.get(name).class_names
    source = sources.make_source(data, data.train_split)
    first = next(source[i] for i in range(len(source))
                 if source[i]["label"][0, 0] == layouts.MARKERS[name][0][1]
                 and source[i]["label"].shape[1] >= 4 * len(layouts.MARKERS[name]))
    for index, (_, cls) in enumerate(layouts.MARKERS[name]):
        block = first["label"][:layouts.BLOCK, index * 4:(index + 1) * 4]
        np.testing.assert_array_equal(block, cls, err_msg=f"{name} marker {index}")
    assert first["image"].dtype == np.uint8 and first["image"].shape[-1] == 3
    assert first["label"].dtype == np.int32 and first["label"].shape == first["image"].shape[:2]
    labels = np.concatenate([source[i]["label"].ravel() for i in range(len(source))])
    classes = set(np.unique(labels)) - {255}
    assert classes and max(classes) < len(data.class_names)
    val = sources.make_source(data, data.val_split)
    assert len(val) >= 1 and val[0]["label"] is not None


def test_cityscapes_files_and_splits(roots):
    data = data_config("cityscapes_semantic", roots["cityscapes_semantic"])
    train = sources.make_source(data, "train")
    assert [train[i]["name"] for i in range(3)] == [
        "aachen_000000_000019_leftImg8bit.png", "aachen_000002_000021_leftImg8bit.png",
        "bochum_000001_000020_leftImg8bit.png"]
    assert len(sources.make_source(data, "train[1:]")) == 2
    test = sources.make_source(data, "test")
    assert test[0]["label"] is None


def test_voc_train_aug_is_sbd_plus_voc_train_minus_voc_val(roots):
    root = roots["voc2012_aug"]
    chosen = released.voc_split_ids(root, "train_aug")
    voc_train = [f"2007_{i:06d}" for i in range(3)]
    sbd = [f"2009_{i:06d}" for i in range(3)] + [f"2010_{i:06d}" for i in range(3)]
    assert sorted(chosen) == sorted(voc_train + sbd)        # VOC val's 2008_000000 left out
    assert all(chosen[i] == "voc" for i in voc_train) and all(chosen[i] == "sbd" for i in sbd)
    data = data_config("voc2012_aug", root)
    source = sources.make_source(data, "train_aug")
    assert len(source) == 9
    examples = {source[i]["name"]: source[i] for i in range(len(source))}
    # 2007_000000 is also in SBD's val list with SBD class 5 everywhere: VOC's label wins.
    assert examples["2007_000000.jpg"]["label"][0, 0] == 15
    assert (examples["2007_000000.jpg"]["label"] == 255).any()      # VOC's void border
    sbd_label = examples["2009_000000.jpg"]["label"]
    assert sbd_label[0, 0] == 15 and not (sbd_label == 255).any()   # SBD has no void
    assert len(sources.make_source(data, "val")) == 3
    assert len(sources.make_source(data, "trainval")) == 6


def test_sbd_mat_is_read_with_scipy(tmp_path):
    segmentation = np.arange(12, dtype=np.uint8).reshape(3, 4) % 21
    layouts.write_sbd_mat(tmp_path / "x.mat", segmentation)
    np.testing.assert_array_equal(released.read_label(tmp_path / "x.mat", "x"), segmentation)
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="bad.mat: not an SBD cls file"):
        released.read_label(tmp_path / "bad.mat", "bad")


def test_voc_palette_png_is_read_as_indices(roots):
    voc = roots["voc2012_aug"] / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    path = voc / "2007_000000.png"
    with Image.open(path) as image:
        assert image.mode == "P"
    assert released.read_label(path, "x")[0, 0] == 15


def test_stray_and_missing_files_are_named(tmp_path):
    city = layouts.write_cityscapes(tmp_path / "city", images=2)
    data = data_config("cityscapes_semantic", city)
    stray = city / "leftImg8bit" / "train" / "aachen" / "aachen_notes.png"
    stray.write_bytes(b"x")
    with pytest.raises(released.LayoutError, match="aachen_notes.png"):
        sources.make_source(data, "train")
    stray.unlink()
    (city / "leftImg8bit" / "train" / "aachen" / ".DS_Store").write_bytes(b"x")  # hidden: fine
    label = next((city / "gtFine" / "train").rglob("*_gtFine_labelIds.png"))
    label.unlink()
    with pytest.raises(released.LayoutError, match=f"missing: .*{label.name}"):
        sources.make_source(data, "train")

    ade = layouts.write_ade20k(tmp_path / "ade", images=2)
    data = data_config("ade20k_sceneparsing", ade)
    base = ade / "ADEChallengeData2016"
    orphan = base / "annotations" / "training" / "ADE_train_00000099.png"
    orphan.write_bytes((base / "annotations" / "training" / "ADE_train_00000001.png").read_bytes())
    with pytest.raises(released.LayoutError, match="ADE_train_00000099.png"):
        sources.make_source(data, "train")
    orphan.unlink()
    (base / "images" / "training" / "readme.txt").write_text("x")
    with pytest.raises(released.LayoutError, match="readme.txt"):
        sources.make_source(data, "train")

    voc = layouts.write_voc(tmp_path / "voc", images=2)
    data = data_config("voc2012_aug", voc)
    (voc / "benchmark_RELEASE" / "dataset" / "cls" / "2009_000001.mat").unlink()
    with pytest.raises(released.LayoutError, match="2009_000001.mat"):
        sources.make_source(data, "train_aug")
    with pytest.raises(released.LayoutError, match="no VOCdevkit/VOC2012/JPEGImages"):
        released.entries("voc2012_aug", tmp_path / "city", "val")
    with pytest.raises(ValueError, match="unknown split 'test'.*train_aug"):
        released.entries("voc2012_aug", voc, "test")


def test_coco_unannotated_and_unknown_values_are_errors(tmp_path):
    root = layouts.write_coco_stuff(tmp_path / "coco", images=1)
    data = data_config("coco_stuff164k", root)
    path = next((root / "annotations" / "val2017").glob("*.png"))
    raw = np.asarray(Image.open(path)).copy()
    raw[5, 5] = 11                                   # 'street sign': no COCO annotations
    Image.fromarray(raw).save(path)
    with pytest.raises(ValueError, match=rf"{path.name}.*label value\(s\) \[11\]"):
        sources.make_source(data, "val")[0]
    # The folder name of the stuffthingmaps archive is read as well.
    (root / "annotations").rename(root / "stuffthingmaps_trainval2017")
    assert len(sources.make_source(data, "train")) == 1


@pytest.mark.parametrize("name", NAMES)
def test_tfds_builder_gives_the_same_examples(name, roots, tmp_path):
    from segjax.data.builders import prepare

    prepare(name, local_dir=roots[name], data_dir=tmp_path)
    data = data_config(name, roots[name])
    split = data.train_split
    ours = sources.make_source(data, split)
    data.source, data.tfds_name, data.root = "tfds", name, str(tmp_path)
    theirs = sources.make_source(data, split)
    assert len(ours) == len(theirs) > 0
    for index in range(len(ours)):
        a, b = ours[index], theirs[index]
        assert a["name"] == b["name"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_builder_command_line(tmp_path):
    import subprocess
    import sys
    root = layouts.write_ade20k(tmp_path / "ade", images=1)
    result = subprocess.run([sys.executable, "-m", "segjax.data.builders", "ade20k_sceneparsing",
                             "--source", str(root), "--data_dir", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "prepared ade20k_sceneparsing" in result.stdout
    assert list((tmp_path / "out" / "ade20k_sceneparsing").rglob("*.array_record*"))
