"""Volumes: NIfTI / TIFF stack / .npy readers, volume sources and their errors,
foreground-oversampled training patches, 3D transforms, and the grain pipeline on volumes."""

import gzip

import nibabel
import numpy as np
import pytest
from PIL import Image

from segjax.config import base_config
from segjax.data import pipeline, sources, transforms, volume_files, volume_patches

AFFINE = np.array([[0.0, 0.0, 2.5, -10.0],
                   [0.0, 1.5, 0.0, 4.0],
                   [1.2, 0.0, 0.0, 7.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _nifti(path, array, affine=AFFINE):
    nibabel.save(nibabel.Nifti1Image(array, affine), str(path))
    return path


def _tiff_stack(path, pages):
    images = [Image.fromarray(page) for page in pages]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


def _volume_folder(root, count=3, shape=(8, 12, 10), channels=2, classes=3, split="train"):
    """`count` .npy image volumes (channels last) and NIfTI labels under root/split."""
    rng = np.random.default_rng(0)
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    for index in range(count):
        label = np.zeros(shape, np.uint8)
        label[2:5, 3:7, 2:6] = 1 + index % (classes - 1)
        image = rng.normal(size=shape + (channels,)).astype(np.float32) + label[..., None]
        np.save(root / split / "images" / f"case_{index}.npy", image)
        _nifti(root / split / "labels" / f"case_{index}.nii.gz", label)
    return root


def _data(root, **changes):
    data = base_config().data
    data.source, data.root, data.image_channels = "volume", str(root), 2
    data.normalization, data.crop, data.batch_size = "zscore", (4, 8, 8), 2
    data.class_names = ("background", "a", "b")
    data.volume.zscore_over = "all"
    for key, value in changes.items():
        data[key] = value
    return data


# ----------------------------------------------------------------------------- readers


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_keeps_voxels_spacing_and_affine(tmp_path, suffix):
    array = np.arange(3 * 4 * 5 * 2, dtype=np.float32).reshape(3, 4, 5, 2)
    path = _nifti(tmp_path / f"scan{suffix}", array)
    volume = volume_files.read_volume(path)
    np.testing.assert_array_equal(volume.data, array)
    assert volume.spacing == pytest.approx((1.2, 1.5, 2.5))
    np.testing.assert_allclose(volume.affine, AFFINE)
    from_bytes = volume_files.read_volume(path.name, path.read_bytes())
    np.testing.assert_array_equal(from_bytes.data, array)
    assert from_bytes.spacing == pytest.approx(volume.spacing)
    assert volume_files.volume_stem(path) == "scan"


def test_tiff_stack_and_npy(tmp_path):
    pages = [np.full((4, 6), 10 * i, np.uint8) for i in range(5)]
    volume = volume_files.read_volume(_tiff_stack(tmp_path / "stack.tif", pages))
    assert volume.data.shape == (5, 4, 6) and volume.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(volume.data[3], 30)
    array = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    np.testing.assert_array_equal(volume_files.read_volume(tmp_path / "x.npy").data, array)


def test_write_nifti_round_trips_the_affine(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (4, 5, 6))
    path = volume_files.write_nifti(tmp_path / "out" / "pred.nii.gz", labels, AFFINE)
    image = nibabel.load(str(path))
    np.testing.assert_allclose(image.affine, AFFINE)
    np.testing.assert_array_equal(np.asarray(image.dataobj), labels)
    assert image.get_data_dtype() == np.uint8


# ----------------------------------------------------------------------------- sources


def test_volume_source_pairs_images_and_labels_across_formats(tmp_path):
    data = _data(_volume_folder(tmp_path))
    source = sources.make_source(data, "train[1:]")
    assert len(source) == 2
    example = source[0]
    assert example["name"] == "case_1"
    assert example["image"].shape == (8, 12, 10, 2) and example["image"].dtype == np.float32
    assert example["label"].shape == (8, 12, 10) and example["label"].dtype == np.int32
    assert set(np.unique(example["label"])) == {0, 2}
    assert example["spacing"] == pytest.approx((1.2, 1.5, 2.5)) or example["spacing"] == (1, 1, 1)


@pytest.mark.parametrize("case,match", [
    ("shape", r"labels/case_0.nii.gz: label shape \(8, 12, 9\) does not match its image "
              r".*images/case_0.npy"),
    ("value", r"labels/case_0.nii.gz: label value\(s\) \[7\] are outside the label map"),
    ("mapped", r"labels/case_0.nii.gz: label value\(s\) \[1\] not in data.label_values"),
    ("unreadable", r"images/case_0.npy: cannot read volume"),
    ("float", r"labels/case_0.nii.gz: label dtype float32 with non-integer values"),
    ("channels", r"images/case_0.npy: volume has 2 channel\(s\).*image_channels=3"),
    ("missing", r"case_0.npy has no label"),
])
def test_bad_volumes_are_errors_naming_the_file(tmp_path, case, match):
    root = _volume_folder(tmp_path, count=1)
    data = _data(root)
    label_path = root / "train" / "labels" / "case_0.nii.gz"
    label = np.asarray(nibabel.load(str(label_path)).dataobj)
    if case == "shape":
        _nifti(label_path, label[:, :, :9])
    elif case == "value":
        label[0, 0, 0] = 7
        _nifti(label_path, label)
    elif case == "mapped":
        data.label_values = (0,)
    elif case == "unreadable":
        (root / "train" / "images" / "case_0.npy").write_bytes(b"not a numpy file")
    elif case == "float":
        _nifti(label_path, label.astype(np.float32) + 0.5)
    elif case == "channels":
        data.image_channels = 3
    elif case == "missing":
        label_path.unlink()
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        sources.make_source(data, "train")[0]


def test_corrupt_nifti_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100))
    with pytest.raises(ValueError, match="bad.nii.gz: cannot read volume"):
        volume_files.read_volume(path)


def test_stack_source_is_one_volume_of_the_selected_slices(tmp_path):
    for index in range(5):
        for kind, value in (("images", 40 * index), ("labels", 255 * (index % 2))):
            (tmp_path / "train" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 8), value, np.uint8)).save(
                tmp_path / "train" / kind / f"{index}.png")
    data = base_config().data
    data.source, data.root, data.image_channels = "stack", str(tmp_path), 1
    data.label_values, data.volume.spacing = (0, 255), (50.0, 4.0, 4.0)
    source = sources.make_source(data, "train[1:4]")
    example = source[0]
    assert len(source) == 1 and example["name"] == "train_1-3"
    assert example["image"].shape == (3, 6, 8, 1)
    np.testing.assert_array_equal(example["image"][:, 0, 0, 0], [40, 80, 120])
    np.testing.assert_array_equal(example["label"][:, 0, 0], [1, 0, 1])
    np.testing.assert_allclose(example["affine"], np.diag([50.0, 4.0, 4.0, 1.0]))


# ----------------------------------------------------------------------------- patches


def test_foreground_oversampling_centres_patches_on_foreground(tmp_path):
    data = _data(_volume_folder(tmp_path, count=1, shape=(16, 32, 32)), crop=(4, 8, 8))
    data.augment.hflip = False
    example = sources.make_source(data, "train")[0]
    data.volume.foreground_fraction = 1.0
    for seed in range(10):
        patch = volume_patches.training_patch(np.random.default_rng(seed), example, data)
        assert patch["image"].shape == (4, 8, 8, 2) and patch["label"].shape == (4, 8, 8)
        assert patch["label"][2, 4, 4] == 1          # the chosen voxel is the patch centre
    data.volume.foreground_fraction = 0.0
    hits = [volume_patches.training_patch(np.random.default_rng(s), example, data)["label"].any()
            for s in range(20)]
    assert not all(hits)                             # foreground is 48 of 8192 voxels


def test_augmentation_context_covers_rotation_scale_and_elastic():
    augment = base_config().data.augment
    assert volume_patches.augmentation_context((16, 64, 64), augment) == (0, 0, 0)
    augment.rotate_degrees = 45.0
    context = volume_patches.augmentation_context((16, 64, 64), augment)
    assert context == (0, 14, 14)                    # (sqrt 2 - 1) * 64 / 2 = 13.3
    augment.rotate_out_of_plane, augment.scale, augment.elastic_sigma = True, (0.8, 1.2), 2.0
    # every axis turns in two planes: sqrt(2)^2 = 2, capped at sqrt(3); / 0.8; + 3 sigma
    factor = np.sqrt(3) / 0.8
    expected = tuple(int(np.ceil((factor - 1) * c / 2 + 6)) for c in (16, 64, 64))
    assert volume_patches.augmentation_context((16, 64, 64), augment) == expected == (16, 44, 44)


def test_rotated_and_deformed_patches_read_only_their_context(tmp_path):
    # Foreground in the middle of the volume: the window around any foreground centre,
    # context included, lies inside it, so no voxel of the patch comes from outside.
    data = _data(tmp_path, crop=(8, 16, 16))
    data.augment.rotate_degrees, data.augment.rotate_out_of_plane = 30.0, True
    data.augment.scale, data.augment.elastic_sigma = (0.8, 1.2), 1.0
    data.augment.rot90, data.augment.dflip = True, True
    data.volume.foreground_fraction = 1.0
    assert volume_patches.augmentation_context((8, 16, 16), data.augment) == (8, 13, 13)
    label = np.zeros((32, 48, 48), np.int32)
    label[14:18, 22:26, 22:26] = 1
    image = np.random.default_rng(0).normal(size=label.shape + (2,)).astype(np.float32)
    example = {"image": image, "label": label, "name": "middle"}
    for seed in range(3):
        patch = volume_patches.training_patch(np.random.default_rng(seed), example, data)
        assert patch["image"].shape == (8, 16, 16, 2)
        assert set(np.unique(patch["label"])) <= {0, 1}
        assert patch["label"].any()


# ----------------------------------------------------------------------------- 3D transforms


def _volume_example(shape=(6, 8, 8)):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, shape).astype(np.int32)
    return {"image": np.repeat(label[..., None], 2, -1).astype(np.float32) * 10, "label": label}


def test_3d_flips_and_rot90_keep_image_and_label_aligned():
    example = _volume_example()
    flipped = transforms.flip(example, 0)
    np.testing.assert_array_equal(flipped["label"], example["label"][::-1])
    rotated = transforms.random_rot90(np.random.default_rng(0), example)
    assert rotated["label"].shape == (6, 8, 8)
    np.testing.assert_array_equal(rotated["image"][..., 0], 10 * rotated["label"])
    config = base_config().data.augment
    config.dflip, config.vflip = True, True
    out = transforms.augment(np.random.default_rng(3), example, config, value_range=None)
    np.testing.assert_array_equal(out["image"][..., 1], 10 * out["label"])


class _Quarter:
    """An rng whose every uniform draw is the top of its range (a 90-degree turn)."""

    def uniform(self, low, high):
        del low
        return high


def test_3d_rotation_by_90_degrees_is_a_quarter_turn_of_the_voxels():
    example = _volume_example((6, 8, 8))
    turned = transforms.random_rotate(_Quarter(), example, max_degrees=90.0)
    np.testing.assert_array_equal(turned["label"], np.rot90(example["label"], -1, (1, 2)))
    np.testing.assert_allclose(turned["image"][..., 0], 10 * turned["label"], atol=1e-4)
    cube = _volume_example((8, 8, 8))
    tilted = transforms.random_rotate(_Quarter(), cube, max_degrees=90.0, out_of_plane=True)
    expected = cube["label"]
    for axes in ((1, 2), (0, 2), (0, 1)):   # the matrix product, applied right to left
        expected = np.rot90(expected, -1, axes)
    np.testing.assert_array_equal(tilted["label"], expected)


def test_3d_scale_and_elastic_never_interpolate_labels():
    example = _volume_example()
    scaled = transforms.random_scale(np.random.default_rng(0), example, scale_range=(2.0, 2.0))
    assert scaled["label"].shape == (12, 16, 16)
    np.testing.assert_array_equal(scaled["label"][::2, ::2, ::2], example["label"])
    deformed = transforms.elastic_deform(np.random.default_rng(0), example, sigma=2.0)
    assert set(np.unique(deformed["label"])) <= {0, 1, 2}
    still = transforms.elastic_deform(np.random.default_rng(0), example, sigma=0.0)
    np.testing.assert_array_equal(still["label"], example["label"])


def test_3d_elastic_displacement_passes_through_the_coarse_grid():
    sigma = 3.0
    field = transforms.elastic_displacement(np.random.default_rng(5), (9, 13, 17), sigma=sigma,
                                            grid=3)
    coarse = np.random.default_rng(5).normal(0.0, sigma, size=(3, 3, 3, 3))
    assert field.shape == (3, 9, 13, 17)
    np.testing.assert_allclose(field[:, ::4, ::6, ::8], coarse, atol=1e-9)


# ----------------------------------------------------------------------------- pipeline


def test_pipeline_batches_volumes_deterministically_and_shards_them(tmp_path):
    data = _data(_volume_folder(tmp_path, count=3), batch_size=4)
    data.augment.vflip, data.augment.dflip, data.augment.elastic_sigma = True, True, 1.0
    single = [next(iterator) for iterator in [pipeline.make_train_loader(data, seed=3)]
              for _ in range(2)]
    batch = single[0]
    assert batch["image"].shape == (4, 4, 8, 8, 2) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (4, 4, 8, 8) and batch["label"].dtype == np.int32
    again = pipeline.make_train_loader(data, seed=3)
    np.testing.assert_array_equal(next(again)["image"], batch["image"])
    shards = [pipeline.make_train_loader(data, seed=3, process_index=p, process_count=2)
              for p in range(2)]
    first = [next(shard) for shard in shards]
    np.testing.assert_array_equal(np.concatenate([s["label"] for s in first]), batch["label"])
    state = again.get_state()
    expected = next(again)
    resumed = pipeline.make_train_loader(data, seed=3)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["image"], expected["image"])


def test_volume_training_rejects_2d_crops_and_weight_maps(tmp_path):
    data = _data(_volume_folder(tmp_path, count=1), crop=(8, 8))
    with pytest.raises(ValueError, match=r"data.crop=\(8, 8\) has 2 axes"):
        next(pipeline.make_train_loader(data, seed=0))
    data = _data(tmp_path)
    data.weight_map.enabled = True
    with pytest.raises(ValueError, match="weight_map"):
        next(pipeline.make_train_loader(data, seed=0))
