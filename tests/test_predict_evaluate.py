"""`python -m segjax.predict` and `python -m segjax.evaluate` on a tiny random CamVid model."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from segjax import checkpoints, cli, evaluate, evaluation, inference, predict
from segjax.config import EvalOptions, base_config
from segjax.models import registry
from segjax.ops import crf

CAMVID_COLOURS = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
                  [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
                  [0, 128, 192]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, camvid_root, random_variables):
    """A run directory as training leaves it: config.json + checkpoints_best/variables."""
    workdir = tmp_path_factory.mktemp("run")
    config = base_config()
    config.model.name = "unet"
    config.model.num_classes = 11
    config.model.padding = "same"
    config.model.width = 4
    config.model.depth = 2
    config.data.root = str(camvid_root)
    config.data.image_channels = 3
    config.data.ignore_values = (11,)
    config.data.class_names = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                               "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist")
    config.data.mean = (0.4, 0.4, 0.4)
    config.data.std = (0.3, 0.3, 0.3)
    (workdir / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    model = registry.build(config.model)
    variables = random_variables(model, jnp.zeros((1, 32, 32, 3)))
    checkpoints.save_variables(workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE, variables,
                              {"model": config.model.to_dict()})
    return workdir, model, variables, config


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory, camvid_root):
    folder = tmp_path_factory.mktemp("inputs")
    names = sorted((camvid_root / "val" / "images").iterdir())[:2]
    for index, path in enumerate(names):
        crop = np.asarray(Image.open(path))[100:164, 200:296]
        Image.fromarray(crop).save(folder / f"frame{index}.png")
    return folder


def test_predict_writes_labels_overlays_probabilities(run_dir, input_dir, tmp_path):
    workdir, model, variables, config = run_dir
    assert predict.main(["--workdir", str(workdir), "--input", str(input_dir), "--output",
                         str(tmp_path), "--probabilities", "--config.eval.flip=True",
                         "--no_progress"]) == 0
    image = np.asarray(Image.open(input_dir / "frame0.png"))
    normalized = (image / 255.0 - 0.4) / 0.3
    expected = inference.tta_predict(evaluation.make_predict_fn(model, variables), normalized,
                                     flip=True)
    label = Image.open(tmp_path / "labels" / "frame0.png")
    assert label.mode == "P"
    assert np.asarray(label.getpalette()[:33]).reshape(11, 3).tolist() == CAMVID_COLOURS
    np.testing.assert_array_equal(np.asarray(label), expected.argmax(-1))
    probs = np.load(tmp_path / "probabilities" / "frame0.npy")
    assert probs.shape == (64, 96, 11) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32), expected, atol=1e-3)
    overlay = np.asarray(Image.open(tmp_path / "overlays" / "frame0.png"))
    colour = np.asarray(CAMVID_COLOURS)[expected.argmax(-1)]
    np.testing.assert_allclose(overlay, np.round(0.5 * image + 0.5 * colour), atol=1)
    assert (tmp_path / "labels" / "frame1.png").is_file()


def test_predict_with_crf_glob_input(run_dir, input_dir, tmp_path):
    workdir = run_dir[0]
    predict.main(["--workdir", str(workdir), "--input", str(input_dir / "frame1*.png"),
                  "--output", str(tmp_path), "--config.eval.crf", "--no_progress"])
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["frame1.png"]


def test_predict_rejects_unreadable_and_wrong_channels(run_dir, tmp_path):
    workdir = run_dir[0]
    broken = tmp_path / "in1"
    broken.mkdir()
    (broken / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png"):
        predict.main(["--workdir", str(workdir), "--input", str(broken), "--output",
                      str(tmp_path / "out"), "--no_progress"])
    gray = tmp_path / "in2"
    gray.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray / "gray.png")
    with pytest.raises(ValueError, match=r"gray\.png: image has 1 channel\(s\), the model "
                                         r"expects 3"):
        predict.main(["--workdir", str(workdir), "--input", str(gray), "--output",
                      str(tmp_path / "out"), "--no_progress"])
    with pytest.raises(FileNotFoundError, match="no image files"):
        predict.resolve_inputs(str(tmp_path / "nothing*.png"))


def test_evaluate_reports(run_dir, camvid_root, tmp_path):
    workdir = run_dir[0]
    assert evaluate.main(["--workdir", str(workdir), "--split", "val", "--limit", "2",
                          "--config.eval.scales=(0.5,)", "--output", str(tmp_path),
                          "--no_progress"]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    # Rows of the confusion matrix are the label histograms of the two frames (void ignored).
    labels = [np.asarray(Image.open(p)) for p in
              sorted((camvid_root / "val" / "labels").iterdir())[:2]]
    histogram = sum(np.bincount(label.reshape(-1), minlength=12)[:11] for label in labels)
    confusion = np.asarray(result["confusion_matrix"])
    np.testing.assert_array_equal(confusion.sum(1), histogram)
    diagonal = np.diag(confusion)
    assert result["pixel_accuracy"] == pytest.approx(diagonal.sum() / histogram.sum())
    assert result["num_images"] == 2 and result["options"]["scales"] == [0.5]
    for key in ("miou", "dice", "per_class_iou", "per_class_accuracy", "seconds_per_image"):
        assert key in result
    markdown = (tmp_path / "metrics.md").read_text()
    assert "mIoU" in markdown and "Bicyclist" in markdown
    assert Image.open(tmp_path / "confusion.png").size[0] > 100


def test_split_expression(run_dir):
    config = run_dir[3]
    assert evaluate.split_expression(config, "val") == "val"
    assert evaluate.split_expression(config, "test[:3]") == "test[:3]"
    isbi = base_config()
    isbi.data.val_split = "train[25:30]"
    assert evaluate.split_expression(isbi, "val") == "train[25:30]"


def test_eval_options_are_config_eval():
    config = base_config()
    config.eval.flip, config.eval.scales = True, (0.5, 1.0)
    options = EvalOptions.from_config(config)
    assert options.flip and options.scales == (0.5, 1.0) and options.crf_params.bi_xy_std == 67
    assert EvalOptions.from_config(base_config()) == EvalOptions()
    assert EvalOptions().to_config().to_dict() == base_config().eval.to_dict()
    unlocked = base_config()
    unlocked.eval.flips = True
    with pytest.raises(ValueError, match=r"config.eval has unknown key\(s\) \['flips'\]"):
        EvalOptions.from_config(unlocked)


def test_command_line_overrides_the_runs_stored_config(run_dir, tmp_path):
    workdir = run_dir[0]
    values, config = cli.parse(
        ["--workdir", str(workdir), "--split", "test", "--config.eval.crf=True",
         "--config.eval.crf_params.bi_w=5", "--config.eval.crf_params.iterations=3",
         "--config.eval.tile", "(32, 32)", "--config.runtime.conv_impl=native"],
        evaluate.define_flags, doc="", default_config=cli.run_config)
    assert values.split == "test" and cli.checkpoint_path(values) == str(workdir)
    assert config.data.mean == (0.4, 0.4, 0.4)                  # the run's own config
    assert config.runtime.conv_impl == "native"
    options = EvalOptions.from_config(config)
    assert options.crf and options.tile == (32, 32)
    assert options.crf_params == crf.CRFParams(bi_w=5.0, iterations=3)
    with pytest.raises(cli.UsageError, match="'bi_weight'"):
        cli.parse(["--workdir", str(workdir), "--config.eval.crf_params.bi_weight=5"],
                  evaluate.define_flags, doc="", default_config=cli.run_config)
    with pytest.raises(cli.UsageError, match="exactly one of --workdir or --checkpoint"):
        cli.parse(["--config.eval.crf=True"], evaluate.define_flags, doc="",
                  default_config=cli.run_config)
    # --config names another config file, which the overrides then change.
    (tmp_path / "other.py").write_text(
        "from segjax.config import base_config\n\n\ndef get_config(arg=''):\n"
        "    config = base_config()\n    config.data.mean = (0.1,)\n    return config\n")
    _, other = cli.parse(["--workdir", str(workdir), "--config", f"{tmp_path / 'other.py'}",
                          "--config.eval.flip=True"], evaluate.define_flags, doc="",
                         default_config=cli.run_config)
    assert other.data.mean == (0.1,) and other.eval.flip
