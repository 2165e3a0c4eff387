"""The one evaluator: the train loop's validation equals `segjax.evaluate` on the same checkpoint
and options; evaluation batches are padded to the mesh and the padding never reaches the metrics."""

import json

import numpy as np
import pytest

from segjax import evaluate, evaluation
from segjax.config import EvalOptions
from segjax.train import loop
from tests.train.conftest import run_python, tiny_config


def test_loop_evaluation_equals_segjax_evaluate(tmp_path):
    config = tiny_config(train__steps=2, train__eval_every=2, eval__flip=True,
                         eval__scales=(0.75, 1.0),
                         eval__metrics=("boundary_iou", "boundary_f", "hd95", "nsd"))
    in_loop = loop.train_and_evaluate(config, tmp_path)
    stored = json.loads((tmp_path / loop.EVAL_FILE).read_text())
    assert stored["step"] == 2 and stored["options"]["flip"] is True
    assert stored["options"]["scales"] == [0.75, 1.0]

    output = tmp_path / "eval"
    assert evaluate.main(["--workdir", str(tmp_path), "--split", "val", "--output",
                          str(output), "--no_progress"]) == 0
    standalone = json.loads((output / "metrics.json").read_text())
    assert standalone["confusion_matrix"] == stored["confusion_matrix"] \
        == in_loop["confusion_matrix"]
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "dice", "per_class_iou",
                "mean_precision", "fw_iou", "boundary_iou", "per_class_boundary_f", "nsd"):
        np.testing.assert_equal(standalone[key], stored[key], err_msg=key)
    assert standalone["options"] == stored["options"]
    report = (output / "metrics.md").read_text()
    assert "| class | IoU | accuracy | Dice | precision | boundary IoU | BF | HD95 | NSD |" \
        in report and "- boundary IoU: " in report
    # Two 24x24 validation images: every label pixel counted exactly once.
    assert np.sum(stored["confusion_matrix"]) == 2 * 24 * 24


def test_predict_fn_pads_batches_to_the_data_axis():
    code = """
import jax, numpy as np
from segjax import evaluation, sharding
from segjax.models import registry
model = registry.build({"name": "unet", "width": 4, "depth": 1, "padding": "same",
                        "num_classes": 3})
variables = model.init(jax.random.key(0, impl="rbg"), np.zeros((1, 8, 8, 1), np.float32))
mesh = sharding.make_mesh({"data": -1, "model": 1})
predict_fn = evaluation.make_predict_fn(model, variables, mesh)
tiles = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype(np.float32)
logits = predict_fn(tiles)
reference = np.asarray(model.apply(variables, tiles)["logits"])
assert mesh.shape["data"] == 8 and logits.shape == (3, 8, 8, 3), logits.shape
np.testing.assert_allclose(logits, reference, atol=1e-5)
assert predict_fn.output_shape((1, 8, 8, 1)) == (1, 8, 8, 3)
print("padded ok")
"""
    result = run_python(code, timeout=300,
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert result.returncode == 0 and "padded ok" in result.stdout, result.stdout[-3000:]


def test_eight_devices_train_and_evaluate_the_isbi_smoke_config(tmp_path, isbi_root):
    """Eval batch 1 on 8 devices: the final evaluation used to die with an IndivisibleError."""
    code = f"""
import sys
from segjax import main
sys.argv = ["segjax.main", "--config", "configs/unet_isbi.py:smoke", "--workdir",
            {str(tmp_path)!r}, "--config.train.steps=2", "--config.data.batch_size=8",
            "--config.data.root={isbi_root}"]
main.run()
"""
    result = run_python(code, timeout=600,
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert result.returncode == 0, result.stdout[-4000:]
    assert "over 8 devices" in result.stdout
    stored = json.loads((tmp_path / loop.EVAL_FILE).read_text())
    assert stored["num_images"] == 1
    # One 512x512 held-out slice; the 7 padding tiles of each batch are not counted.
    assert np.sum(stored["confusion_matrix"]) == 512 * 512


def test_eval_options_read_config_eval():
    config = tiny_config(eval__flip=True, eval__tile=(8, 8), eval__scales=(0.5,))
    options = EvalOptions.from_config(config)
    assert options.flip and options.tile == (8, 8) and options.scales == (0.5,)
    config.unlock()
    config.eval.panoptic.top_kk = 3
    with pytest.raises(ValueError, match=r"config.eval.panoptic has unknown key.*'top_kk'"):
        EvalOptions.from_config(config)


def test_three_evaluations_in_a_run_trace_the_predict_program_once_per_shape(tmp_path,
                                                                              monkeypatch):
    """Whole images (24x24) and sliding-window tiles (2 of 16x16 per call): one trace for each
    shape, however many evaluations bind new weights to the run's program (the sliding
    window's abstract `output_shape` included)."""
    traced = []
    original = evaluation._logits

    def counted(variables, images, **kwargs):
        traced.append(tuple(images.shape))
        return original(variables, images, **kwargs)

    monkeypatch.setattr(evaluation, "_logits", counted)
    for options in ({}, {"eval__tile": (16, 16), "eval__batch_size": 2}):
        traced.clear()
        config = tiny_config(train__steps=6, train__eval_every=2, train__log_every=2, **options)
        loop.train_and_evaluate(config, tmp_path / str(len(options)))
        evaluations = [line for line in (tmp_path / str(len(options)) / "metrics.jsonl")
                       .read_text().splitlines() if '"val/miou"' in line]
        assert len(evaluations) == 3
        shape = (2, 16, 16, 1) if options else (1, 24, 24, 1)
        assert traced == [shape], traced


SHARDED_EVALUATION = """
import json
import jax, numpy as np
from segjax import boundary_metrics, evaluation, sharding
from segjax.data.sources import load_split
from segjax.models import registry
from tests.train.conftest import tiny_config

config = tiny_config(eval__metrics=boundary_metrics.BOUNDARY_METRICS, eval__tile=(16, 16),
                     eval__overlap=0.5, eval__batch_size=3, eval__flip=True,
                     eval__boundary_f_tolerance=0.05, eval__nsd_tolerance=2.0)
model = registry.build(config.model)
shapes = jax.eval_shape(model.init, jax.random.key(0, impl="rbg"),
                        np.zeros((1, 16, 16, 1), np.float32))
rng = np.random.default_rng(0)
variables = jax.tree_util.tree_map_with_path(
    lambda path, s: (np.ones(s.shape) if path[-1].key == "var"
                     else 0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
mesh = sharding.make_mesh({"data": -1, "model": 1})
examples = load_split(config.data, config.data.val_split)
result, kept = evaluation.evaluate(evaluation.make_predict_fn(model, variables, mesh), config,
                                   examples, keep_predictions=2)
# the evaluator's boundary metrics are those of its own predictions
again = boundary_metrics.BoundaryMetrics(
    boundary_metrics.BoundaryOptions.from_config(config.eval), 3, ignore_index=255)
for prediction, example in zip(kept, examples):
    again.update(prediction, example["label"])
np.testing.assert_equal(again.result(), {k: result[k] for k in again.result()})
result = {k: v for k, v in result.items() if not k.startswith("seconds")}
print("RESULT" + json.dumps({"devices": mesh.shape["data"], **result}))
"""


def _sharded_evaluation(devices: int) -> dict:
    result = run_python(SHARDED_EVALUATION, timeout=300, env={
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert result.returncode == 0, result.stdout[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_sharded_evaluation_gives_the_single_device_numbers():
    """Tiles split over 4 devices (3 per call, padded to 4) or on one: the same confusion
    matrix, mIoU, precision/recall/F1, fw-IoU, boundary IoU, BF score, HD95 and NSD."""
    one, four = _sharded_evaluation(1), _sharded_evaluation(4)
    assert one.pop("devices") == 1 and four.pop("devices") == 4
    assert one["confusion_matrix"] == four["confusion_matrix"]
    assert set(one) == set(four)
    for key in ("boundary_iou", "boundary_f", "hd95", "nsd", "miou", "mean_precision",
                "mean_recall", "mean_f1", "fw_iou"):
        assert np.isfinite(one[key]), key
    for key, value in one.items():
        if isinstance(value, str) or (isinstance(value, list) and value
                                      and isinstance(value[0], str)):
            assert four[key] == value, key
        else:
            np.testing.assert_allclose(np.asarray(four[key], float), np.asarray(value, float),
                                       rtol=1e-12, err_msg=key)
