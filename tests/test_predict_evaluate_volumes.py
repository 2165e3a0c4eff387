"""`segjax.predict` and `segjax.evaluate` on a volumetric run: NIfTI in, NIfTI out on the
input's voxel grid, per-class IoU and Dice over whole volumes."""

import json

import jax.numpy as jnp
import nibabel
import numpy as np
import pytest

from segjax import checkpoints, evaluate, predict
from segjax.config import base_config
from segjax.models import registry

AFFINE = np.array([[0.0, 0.0, 2.0, -5.0],
                   [0.0, 1.5, 0.0, 3.0],
                   [1.0, 0.0, 0.0, 1.0],
                   [0.0, 0.0, 0.0, 1.0]])
SHAPE = (6, 12, 10)


def _label(index):
    label = np.zeros(SHAPE, np.uint8)
    label[1:4, 2:8, 3:7] = 1 + index % 2
    return label


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory, random_variables):
    """A volumetric run directory (config.json + best variables) and its data folder."""
    root = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(0)
    for split, count in (("train", 1), ("val", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for index in range(count):
            image = (rng.normal(size=SHAPE) + 2.0 * _label(index)).astype(np.float32)
            nibabel.save(nibabel.Nifti1Image(image, AFFINE),
                         str(root / split / "images" / f"case{index}.nii.gz"))
            nibabel.save(nibabel.Nifti1Image(_label(index), AFFINE),
                         str(root / split / "labels" / f"case{index}.nii.gz"))
    config = base_config()
    config.model.name = "nonewnet"
    config.model.num_classes = 3
    config.model.width = 2
    config.model.depth = 1
    config.data.source = "volume"
    config.data.root = str(root)
    config.data.image_channels = 1
    config.data.class_names = ("background", "a", "b")
    config.data.normalization = "zscore"
    config.data.crop = (4, 8, 8)
    config.eval.tile = (4, 8, 8)
    config.eval.overlap = 0.5
    config.eval.blend = "gaussian"
    workdir = tmp_path_factory.mktemp("run")
    (workdir / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    model = registry.build(config.model)
    variables = random_variables(model, jnp.zeros((1, 4, 8, 8, 1)))
    checkpoints.save_variables(workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE, variables,
                               {"model": config.model.to_dict()})
    return workdir, root


def test_predict_writes_nifti_labels_on_the_inputs_grid(volume_run, tmp_path):
    workdir, root = volume_run
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    source = root / "val" / "images" / "case0.nii.gz"
    (inputs / "scan.nii.gz").write_bytes(source.read_bytes())
    np.save(inputs / "array.npy", np.asarray(nibabel.load(str(source)).dataobj))
    (inputs / "notes.txt").write_text("not a volume")
    out = tmp_path / "out"
    assert predict.main(["--workdir", str(workdir), "--input", str(inputs), "--output",
                         str(out), "--probabilities", "--no_progress"]) == 0
    labels = nibabel.load(str(out / "labels" / "scan.nii.gz"))
    np.testing.assert_allclose(labels.affine, AFFINE)
    values = np.asarray(labels.dataobj)
    assert values.shape == SHAPE and values.dtype == np.uint8 and values.max() < 3
    probs = np.load(out / "probabilities" / "scan.npy")
    assert probs.shape == SHAPE + (3,)
    np.testing.assert_array_equal(values, probs.astype(np.float32).argmax(-1))
    from_npy = nibabel.load(str(out / "labels" / "array.nii.gz"))
    np.testing.assert_allclose(from_npy.affine, np.eye(4))
    np.testing.assert_array_equal(np.asarray(from_npy.dataobj), values)
    assert (out / "overlays" / "scan.png").is_file()
    assert not (out / "labels" / "notes.nii.gz").exists()


def test_evaluate_reports_per_class_iou_and_dice_over_volumes(volume_run, tmp_path):
    workdir, _ = volume_run
    assert evaluate.main(["--workdir", str(workdir), "--split", "val", "--output",
                          str(tmp_path), "--no_progress"]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["num_images"] == 2
    assert len(result["per_class_iou"]) == len(result["per_class_dice"]) == 3
    confusion = np.asarray(result["confusion_matrix"])
    histogram = sum(np.bincount(_label(i).reshape(-1), minlength=3) for i in range(2))
    np.testing.assert_array_equal(confusion.sum(1), histogram)
    iou, dice = np.asarray(result["per_class_iou"]), np.asarray(result["per_class_dice"])
    np.testing.assert_allclose(dice, 2 * iou / (1 + iou))
    assert "background" in (tmp_path / "metrics.md").read_text()
