"""`python -m segjax.main` end to end on the ISBI smoke config, and its flag errors."""

import json

from segjax import checkpoints
from segjax.train import checkpoint
from segjax.train.logging import read_metrics, read_tensorboard_scalars
from tests.train.conftest import run_python

MAIN = """
import sys
from segjax import main
sys.argv = ["segjax.main"] + {args!r}
main.run()
"""


def test_smoke_run_writes_every_output(tmp_path, isbi_root):
    workdir = tmp_path / "smoke"
    result = run_python(MAIN.format(args=["--config", "configs/unet_isbi.py:smoke",
                                          "--workdir", str(workdir),
                                          "--config.train.steps=2"]), timeout=400)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "mIoU" in result.stdout and f"{workdir}/eval_metrics.json" in result.stdout

    assert checkpoint.TrainingCheckpoints(
        workdir, json_config(workdir)).manager.all_steps() == [2]
    assert (workdir / "checkpoints_best" / "variables" / "metadata").is_dir()
    steps = [r["step"] for r in read_metrics(workdir) if "train/loss" in r]
    assert steps == [2]
    assert "train/loss" in read_tensorboard_scalars(workdir / "tensorboard")
    evaluation = json.loads((workdir / "eval_metrics.json").read_text())
    assert evaluation["step"] == 2 and len(evaluation["per_class_iou"]) == 2
    assert 0.0 <= evaluation["miou"] <= 1.0
    overlays = sorted((workdir / "predictions").glob("*.png"))
    assert [p.name for p in overlays] == ["25.png"]
    from PIL import Image
    assert Image.open(overlays[0]).size == (3 * 512, 512)  # image | overlay | errors

    loaded = checkpoints.load(workdir)
    assert loaded.config.model.width == 4 and loaded.config.train.steps == 2
    assert set(loaded.variables) == {"params", "batch_stats"}


def json_config(workdir):
    import ml_collections
    return ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))


def test_unknown_config_key_is_named(tmp_path):
    result = run_python(MAIN.format(args=["--config", "configs/unet_isbi.py:smoke",
                                          "--workdir", str(tmp_path),
                                          "--config.train.stpes=1"]), timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[-1] == ("error: --config.train.stpes: config.train has no field 'stpes'; "
                         "did you mean config.train.steps?")
    assert not (tmp_path / "checkpoints").exists()
