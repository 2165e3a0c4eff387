"""`python -m segjax.predict` and `python -m segjax.evaluate` on a tiny random CamVid model."""

import json

import jax
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


# ----------------------------------------------------------------------------- binary mode


BINARY_STEPS = 100


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, isbi_root):
    """configs/unet_isbi.py:smoke,binary (one sigmoid channel: membrane) trained for
    BINARY_STEPS steps at a constant 3e-3: about half a minute on the 2-core CPU."""
    from segjax import config as config_lib
    from segjax.train import loop
    workdir = tmp_path_factory.mktemp("binary")
    config = config_lib.load("configs/unet_isbi.py:smoke,binary")
    config.unlock()
    config.data.root = str(isbi_root)
    config.train.steps = config.train.eval_every = config.train.checkpoint_every = BINARY_STEPS
    config.train.log_every = BINARY_STEPS
    config.optim.learning_rate = 3e-3
    config.optim.schedule = "constant"
    config.lock()
    return workdir, config, loop.train_and_evaluate(config, workdir)


def all_background_confusion(config) -> np.ndarray:
    """The (1, 2, 2) counts of predicting no membrane anywhere, on the validation labels."""
    from segjax import metrics
    from segjax.data.sources import load_split
    labels = np.stack([example["label"] for example in
                       load_split(config.data, config.data.val_split)])
    return np.asarray(metrics.multilabel_confusion(jnp.zeros(labels.shape, bool),
                                                   jnp.asarray(labels)))


def two_class_miou(confusion) -> float:
    """mIoU of the (background, membrane) pair a softmax model would report."""
    (tn, fp), (fn, tp) = np.asarray(confusion)[0]
    return (tn / (tn + fp + fn) + tp / (tp + fp + fn)) / 2


def test_binary_membranes_beat_predicting_all_background(binary_run):
    """The tracker of every peer: 'binary model predicts only zeros'. A short binary run on
    ISBI must find membranes: a positive Dice, and accuracy and the two-class mIoU above
    the all-background prediction's (Dice 0, accuracy = the background share)."""
    _, config, result = binary_run
    from segjax import metrics
    confusion = all_background_confusion(config)
    baseline = metrics.metrics_from_multilabel_confusion(confusion)
    assert confusion.sum() == 512 * 512 and baseline["dice"] == 0.0
    assert result["num_images"] == 1 and result["class_names"] == ["membrane"]
    assert result["dice"] > 0.4 and result["miou"] > 0.25
    assert result["pixel_accuracy"] > baseline["pixel_accuracy"] + 0.01
    assert two_class_miou(result["confusion_matrix"]) > two_class_miou(confusion) + 0.1


def test_binary_evaluate_and_predict_one_mask_per_class(binary_run, isbi_root, tmp_path):
    workdir, config, result = binary_run
    output = tmp_path / "eval"
    assert evaluate.main(["--workdir", str(workdir), "--split", "val", "--output", str(output),
                          "--no_progress"]) == 0
    standalone = json.loads((output / "metrics.json").read_text())
    assert standalone["confusion_matrix"] == result["confusion_matrix"]
    assert standalone["options"]["activation"] == "sigmoid"
    assert not (output / "confusion.png").exists()
    assert "membrane" in (output / "metrics.md").read_text()

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = np.asarray(Image.open(isbi_root / "train" / "images" / "25.png"))
    Image.fromarray(image).save(inputs / "slice25.png")
    out = tmp_path / "predicted"
    assert predict.main(["--workdir", str(workdir), "--input", str(inputs), "--output",
                         str(out), "--probabilities", "--no_progress"]) == 0
    mask = np.asarray(Image.open(out / "masks" / "membrane" / "slice25.png"))
    probs = np.load(out / "probabilities" / "slice25.npy")
    assert mask.shape == (512, 512) and set(np.unique(mask)) == {0, 255}
    assert probs.shape == (512, 512, 1)
    probability = probs[..., 0].astype(np.float32)        # stored as float16
    disagree = (mask == 255) != (probability > 0.5)
    assert np.all(np.abs(probability[disagree] - 0.5) <= 1e-3)
    assert not (out / "labels").exists()
    # the same membranes as the evaluation counted: its true + false positives
    (_, fp), (_, tp) = np.asarray(result["confusion_matrix"])[0]
    assert np.sum(mask == 255) == tp + fp


def test_sigmoid_predict_applies_per_class_thresholds(tmp_path, random_variables):
    """Two channels with thresholds 0.3 / 0.7: each mask is its channel's probability above
    its own threshold; the overlay colours only pixels with a positive channel."""
    config = base_config()
    config.model.name = "unet"
    config.model.num_classes = 2
    config.model.padding = "same"
    config.model.width = 4
    config.model.depth = 1
    config.model.head_activation = "sigmoid"
    config.data.label_format = "channels"
    config.data.image_channels = 1
    config.data.class_names = ("mito chondria", "membrane")
    model = registry.build(config.model)
    variables = random_variables(model, jnp.zeros((1, 16, 16, 1)), seed=3)
    image = np.random.default_rng(0).integers(0, 255, (24, 20), np.uint8)
    logits = np.asarray(model.apply(variables, ((image / 255.0 - 0.5) / 0.5)[None, ..., None]
                                    .astype(np.float32))["logits"])[0]
    probs = 1 / (1 + np.exp(-logits))
    # thresholds inside each channel's range, so that each splits its pixels
    thresholds = tuple(round(float(np.quantile(probs[..., k], q)), 4)
                       for k, q in ((0, 0.3), (1, 0.7)))
    config.eval.thresholds = thresholds
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    checkpoints.save_variables(workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE, variables,
                           {"model": config.model.to_dict()})
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(image).save(inputs / "a.png")
    out = tmp_path / "out"
    assert predict.main(["--workdir", str(workdir), "--input", str(inputs), "--output", str(out),
                         "--no_progress"]) == 0
    first = np.asarray(Image.open(out / "masks" / "mito_chondria" / "a.png")) == 255
    second = np.asarray(Image.open(out / "masks" / "membrane" / "a.png")) == 255
    np.testing.assert_array_equal(first, probs[..., 0] > thresholds[0])
    np.testing.assert_array_equal(second, probs[..., 1] > thresholds[1])
    assert 0.6 < first.mean() < 0.8 and 0.2 < second.mean() < 0.4
    overlay = np.asarray(Image.open(out / "overlays" / "a.png")).astype(int)
    untouched = ~(first | second)
    np.testing.assert_array_equal(overlay[untouched], np.repeat(image[untouched, None], 3, -1))
    median = round(float(np.median(probs[..., 0])), 4)
    assert predict.main(["--workdir", str(workdir), "--input", str(inputs), "--output",
                         str(tmp_path / "out2"), f"--config.eval.thresholds=({median},)",
                         "--no_progress"]) == 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out2" / "masks" / "mito_chondria" / "a.png")) == 255,
        probs[..., 0] > median)


def test_predict_refuses_to_overwrite_label_maps_without_overwrite(run_dir, input_dir, tmp_path):
    workdir = run_dir[0]
    command = ["--workdir", str(workdir), "--input", str(input_dir), "--output", str(tmp_path),
               "--no_progress"]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "frame1.png").write_bytes(b"earlier result")
    (tmp_path / "frame0.png").write_bytes(b"not an output")  # outputs are written in folders
    with pytest.raises(cli.UsageError, match=r"--output .* already holds 1 output file\(s\) "
                                             r".*labels/frame1\.png.*--overwrite"):
        predict.main(command)
    assert (tmp_path / "labels" / "frame1.png").read_bytes() == b"earlier result"
    assert not (tmp_path / "overlays").exists()
    assert predict.main([*command, "--overwrite"]) == 0
    assert Image.open(tmp_path / "labels" / "frame1.png").mode == "P"


def test_predict_and_evaluate_refuse_nonfinite_weights(run_dir, input_dir, tmp_path):
    workdir, _, variables, config = run_dir
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    poisoned = jax.tree_util.tree_map(lambda x: np.asarray(x) * np.nan, variables)
    checkpoints.save_variables(broken / checkpoints.BEST_DIR / checkpoints.BEST_FILE, poisoned,
                               {"model": config.model.to_dict(), "step": 40})
    with pytest.raises(checkpoints.CheckpointError, match=r"\(step 40\): variable params/.* "
                                                          r"holds NaN or inf"):
        predict.main(["--workdir", str(broken), "--input", str(input_dir), "--output",
                      str(tmp_path / "out"), "--no_progress"])
    with pytest.raises(checkpoints.CheckpointError, match="holds NaN or inf"):
        evaluate.main(["--workdir", str(broken), "--limit", "1", "--no_progress"])
    assert not (tmp_path / "out" / "labels").exists()


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, capsys):
    from segjax.train import loop
    from tests.train.conftest import tiny_config
    workdir = tmp_path / "run"
    loop.train_and_evaluate(tiny_config(train__steps=4, data__val_split=""), workdir)
    (workdir / "checkpoints" / "4" / "meta" / "metadata").write_text('{"step": 4, "exa')
    variables, metadata = checkpoints.read_checkpoint(workdir)
    assert metadata["step"] == 2
    err = capsys.readouterr().err
    assert f"warning: checkpoint {workdir}/checkpoints/4 is unreadable (JSONDecodeError" in err
    assert err.rstrip().endswith(f"; using {workdir}/checkpoints/2")
    output = tmp_path / "eval"
    assert evaluate.main(["--workdir", str(workdir), "--split", "train[12:14]", "--output",
                          str(output), "--no_progress"]) == 0
    assert json.loads((output / "metrics.json").read_text())["num_images"] == 2
    (workdir / "checkpoints" / "2" / "meta" / "metadata").write_text("")
    with pytest.raises(checkpoints.CheckpointError, match=r"no readable checkpoint in .*run "
                                                          r"\(.*checkpoints/4: JSONDecodeError"):
        checkpoints.read_checkpoint(workdir)


def test_predict_skips_a_corrupt_image_finishes_the_others_and_exits_1(run_dir, input_dir,
                                                                        tmp_path, capsys):
    workdir = run_dir[0]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in input_dir.iterdir():
        (inputs / path.name).write_bytes(path.read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    output = tmp_path / "out"
    assert cli.invoke(predict.main, ["--workdir", str(workdir), "--input", str(inputs),
                                     "--output", str(output), "--no_progress"]) == 1
    assert sorted(p.name for p in (output / "labels").iterdir()) == ["frame0.png", "frame1.png"]
    captured = capsys.readouterr()
    assert "wrote 2 label maps and overlays of 2 inputs" in captured.out
    err = captured.err.splitlines()
    assert err[0].startswith(f"warning: skipped {inputs}/broken.png: cannot read image")
    assert err[-1].startswith(f"error: 1 of 3 inputs skipped, unreadable: cannot read image "
                              f"{inputs}/broken.png")


def test_unwritable_outputs_are_one_line_before_anything_is_computed(run_dir, input_dir, tmp_path,
                                                                   monkeypatch):
    """A file where the output folder's parent should be: refused before the checkpoint loads."""
    workdir = run_dir[0]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(checkpoints, "load", lambda *a, **k: pytest.fail("loaded a checkpoint"))
    with pytest.raises(PermissionError, match=r"cannot create .*a_file/report: its parent "
                                              r".*a_file is not writable .*--output"):
        evaluate.main(["--workdir", str(workdir), "--output", str(blocker / "report"),
                       "--no_progress"])
    with pytest.raises(PermissionError, match=r"cannot create .*a_file/out: .*predictions go "
                                              r"there.*another --output"):
        predict.main(["--workdir", str(workdir), "--input", str(input_dir), "--output",
                      str(blocker / "out"), "--no_progress"])
