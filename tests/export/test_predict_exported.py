"""`python -m segjax.predict --model exported.onnx|.tflite`: the same sliding window and
test-time augmentation as the JAX model, through onnxruntime and the LiteRT interpreter.

A valid-padding U-Net (its output 40 pixels smaller than its 92 x 92 tile: the window's margins
come from the exported metadata) is exported with a fixed batch of 2 and predicts two images
larger than a tile, one non-square, with flips. The probabilities equal those of
`--workdir` (JAX) run with the same tile and batch. Needs the export extra; skipped without it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

# pylint: disable=wrong-import-position
from segjax import checkpoints, cli, export, predict  # noqa: E402
from segjax.config import base_config  # noqa: E402
from segjax.models import registry  # noqa: E402

TILE = (92, 92)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, random_variables):
    """A run directory of a tiny valid U-Net (3 classes, grey images) with random weights."""
    config = base_config()
    config.model.name = "unet"
    config.model.num_classes = 3
    config.model.width, config.model.depth, config.model.padding = 4, 2, "valid"
    config.data.image_channels = 1
    config.data.mean, config.data.std = (0.4,), (0.3,)
    config.eval.tile = TILE
    config.eval.batch_size = 2
    model = registry.build(config.model)
    variables = random_variables(model, jnp.zeros((1, *TILE, 1)), seed=5)
    workdir = tmp_path_factory.mktemp("run")
    (workdir / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    checkpoints.save_variables(workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE,
                               variables, {"model": config.model.to_dict()})
    return workdir


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(11)
    for name, shape in (("square", (120, 120)), ("wide", (100, 170))):
        Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(folder / f"{name}.png")
    return folder


def predicted_probabilities(command, output):
    assert predict.main([*command, "--output", str(output), "--probabilities", "--no_progress",
                         "--config.eval.flip=True"]) == 0
    return {path.stem: np.load(path) for path in sorted((output / "probabilities").glob("*.npy"))}


@pytest.mark.parametrize("fmt, bake", [("onnx", False), ("tflite", False), ("onnx", True)],
                         ids=["onnx", "tflite", "onnx-baked-normalization"])
def test_predict_with_an_exported_model_equals_jax(run_dir, images, fmt, bake, tmp_path):
    """With the normalisation baked in, the model takes raw pixels and predict passes them."""
    model = tmp_path / f"unet.{fmt}"
    assert export.main(["--workdir", str(run_dir), "--format", fmt, "--output", str(model),
                        "--input_shape", "92,92,1", "--batch", "2",
                        f"--{'' if bake else 'no'}bake_normalization"]) == 0
    exported = predicted_probabilities(["--model", str(model), "--input", str(images)],
                                       tmp_path / "exported")
    jax_run = predicted_probabilities(["--workdir", str(run_dir), "--input", str(images)],
                                      tmp_path / "jax")
    assert sorted(exported) == ["square", "wide"]
    for name, probs in jax_run.items():
        assert exported[name].shape == probs.shape == (*np.asarray(
            Image.open(images / f"{name}.png")).shape, 3)
        # float16 files: equal up to the rounding of the stored values
        np.testing.assert_allclose(exported[name].astype(np.float32), probs.astype(np.float32),
                                   atol=1e-3, rtol=0)
        assert 0.2 < probs.astype(np.float32).max(-1).mean() < 0.99  # not uniform: a real test
    labels_exported = np.asarray(Image.open(tmp_path / "exported" / "labels" / "wide.png"))
    labels_jax = np.asarray(Image.open(tmp_path / "jax" / "labels" / "wide.png"))
    assert (labels_exported == labels_jax).mean() > 0.999


def test_model_with_workdir_is_refused(run_dir, images, tmp_path):
    with pytest.raises(cli.UsageError, match="give --model or one of --workdir"):
        predict.main(["--model", str(tmp_path / "m.onnx"), "--workdir", str(run_dir),
                      "--input", str(images), "--output", str(tmp_path / "out")])


def test_missing_exported_model_is_named(images, tmp_path):
    with pytest.raises(FileNotFoundError, match="--model: no exported model at .*m.onnx"):
        predict.main(["--model", str(tmp_path / "m.onnx"), "--input", str(images),
                      "--output", str(tmp_path / "out")])


def test_the_exported_tile_replaces_the_configs_with_a_note(run_dir, images, tmp_path, capsys):
    model = tmp_path / "unet.onnx"
    assert export.main(["--workdir", str(run_dir), "--format", "onnx", "--output", str(model),
                        "--input_shape", "124,124,1", "--batch", "1"]) == 0
    assert predict.main(["--model", str(model), "--input", str(images / "wide.png"),
                         "--output", str(tmp_path / "out"), "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "config.eval.tile set to the exported input size (124, 124)" in out
    assert "config.eval.batch_size set to the exported batch 1" in out
    assert np.asarray(Image.open(tmp_path / "out" / "labels" / "wide.png")).shape == (100, 170)
