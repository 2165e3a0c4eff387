"""The one evaluator: the train loop's validation equals `segjax.evaluate` on the same checkpoint
and options; evaluation batches are padded to the mesh and the padding never reaches the metrics."""

import json

import numpy as np
import pytest

from segjax import evaluate
from segjax.config import EvalOptions
from segjax.train import loop
from tests.train.conftest import run_python, tiny_config


def test_loop_evaluation_equals_segjax_evaluate(tmp_path):
    config = tiny_config(train__steps=2, train__eval_every=2, eval__flip=True,
                         eval__scales=(0.75, 1.0))
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
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "dice", "per_class_iou"):
        assert standalone[key] == stored[key], key
    assert standalone["options"] == stored["options"]
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
