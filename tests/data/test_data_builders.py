"""tfds builders: built from a local folder, read back with TfdsSource, same pixels."""

import numpy as np
import pytest
from PIL import Image

from segjax.config import base_config
from segjax.data import sources


def test_isbi_from_local_folder_matches_folder_source(isbi_root, tmp_path):
    from segjax.data.builders import prepare

    path = prepare("isbi2012_em", local_dir=isbi_root, data_dir=tmp_path)
    assert path.is_dir() and list(path.glob("*.array_record*"))
    kwargs = dict(image_channels=1, label_values=(0, 255))
    for split in ("train[25:30]", "train[:2]"):
        tfds_source = sources.TfdsSource("isbi2012_em", split, data_dir=str(tmp_path), **kwargs)
        folder_source = sources.FolderSource(isbi_root, split, **kwargs)
        assert len(tfds_source) == len(folder_source)
        for index in range(len(folder_source)):
            ours, theirs = tfds_source[index], folder_source[index]
            assert ours["name"] == theirs["name"]
            np.testing.assert_array_equal(ours["image"], theirs["image"])
            np.testing.assert_array_equal(ours["label"], theirs["label"])
    data = base_config().data
    data.source, data.tfds_name, data.root = "tfds", "isbi2012_em", str(tmp_path)
    data.image_channels, data.label_values = 1, (0, 255)
    test = sources.make_source(data, "test")
    assert len(test) == 30 and test[0]["label"] is None


def test_camvid_builder_from_a_small_local_folder(tmp_path):
    from segjax.data.builders import prepare

    local = tmp_path / "camvid"
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        for index in range(count):
            name = f"0001TP_{index:06d}.png"
            for kind, array in (("images", np.full((6, 8, 3), index * 40 + 1, np.uint8)),
                                ("labels", np.full((6, 8), 11 - index, np.uint8))):
                (local / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(local / split / kind / name)
    prepare("camvid", local_dir=local, data_dir=tmp_path / "tfds")
    train = sources.TfdsSource("camvid", "train", data_dir=str(tmp_path / "tfds"),
                               image_channels=3, ignore_values=(11,))
    assert len(train) == 2 and train[1]["name"] == "0001TP_000001.png"
    np.testing.assert_array_equal(train[0]["label"], 255)
    np.testing.assert_array_equal(train[1]["label"], 10)
    np.testing.assert_array_equal(train[1]["image"], 41)


def test_prepare_rejects_unknown_names_and_missing_folders(tmp_path):
    from segjax.data.builders import prepare

    with pytest.raises(ValueError, match="camvid, .*isbi2012_em"):
        prepare("voc", local_dir=None, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="local_dir"):
        prepare("camvid", local_dir=tmp_path / "missing", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not prepared.*segjax.data.builders"):
        sources.TfdsSource("camvid", "train", data_dir=str(tmp_path), image_channels=3)


def test_msd_brain_tumour_from_a_tiny_local_task_folder(tmp_path):
    """A Task01_BrainTumour layout with 4-modality NIfTI volumes the test writes itself."""
    import nibabel

    from segjax.data import volume_sources
    from segjax.data.builders import prepare

    task = tmp_path / "Task01_BrainTumour"
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    rng = np.random.default_rng(0)
    written = {}
    for folder, names in (("imagesTr", ("BRATS_002", "BRATS_001")), ("imagesTs", ("BRATS_485",))):
        (task / folder).mkdir(parents=True)
        for name in names:
            image = rng.normal(size=(6, 5, 4, 4)).astype(np.float32)
            nibabel.save(nibabel.Nifti1Image(image, affine), str(task / folder / f"{name}.nii.gz"))
            written[name] = image
            if folder == "imagesTr":
                (task / "labelsTr").mkdir(exist_ok=True)
                label = rng.integers(0, 4, (6, 5, 4)).astype(np.uint8)
                nibabel.save(nibabel.Nifti1Image(label, affine),
                             str(task / "labelsTr" / f"{name}.nii.gz"))
                written[name + "_label"] = label
    (task / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS metadata")
    (task / "dataset.json").write_text("{}")

    prepare("msd_brain_tumour", local_dir=task, data_dir=tmp_path / "tfds")
    data = base_config().data
    data.source, data.tfds_name = "tfds_volume", "msd_brain_tumour"
    data.root = str(tmp_path / "tfds")
    data.image_channels = 4
    data.class_names = ("background", "edema", "non-enhancing tumour", "enhancing tumour")
    train = sources.make_source(data, "train")
    assert len(train) == 2 and [train[i]["name"] for i in range(2)] == ["BRATS_001", "BRATS_002"]
    example = train[0]
    np.testing.assert_array_equal(example["image"], written["BRATS_001"])
    np.testing.assert_array_equal(example["label"], written["BRATS_001_label"])
    assert example["spacing"] == (1.0, 1.0, 1.5)
    np.testing.assert_allclose(example["affine"], affine)
    test = sources.make_source(data, "test")
    assert len(test) == 1 and test[0]["label"] is None
    assert isinstance(test, volume_sources.TfdsVolumeSource)
