"""MetricWriter's JSON lines and TensorBoard events read back; the progress bar's text."""

import io
import json
import math

import numpy as np
import pytest

from segjax.train import logging as train_logging


def test_scalars_reach_jsonl_and_tensorboard(tmp_path, capsys):
    writer = train_logging.MetricWriter(tmp_path)
    writer.write_scalars(10, {"loss": np.float32(0.5), "miou": 0.25})
    writer.write_scalars(20, {"loss": float("nan"), "lr": np.array(1e-3)})
    # Flushed before close: a killed run keeps its lines.
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 10, "loss": 0.5, "miou": 0.25}
    assert json.loads(lines[1]) == {"step": 20, "loss": None, "lr": pytest.approx(1e-3)}
    assert "step 10: loss=0.5 miou=0.25" in capsys.readouterr().out
    writer.write_images(20, {"overlay": np.zeros((8, 6, 3), np.uint8)})
    writer.write_text(20, {"table": "| a | b |"})
    writer.close()

    records = train_logging.read_metrics(tmp_path)
    assert records[0] == {"step": 10, "loss": 0.5, "miou": 0.25}
    assert math.isnan(records[1]["loss"])

    scalars = train_logging.read_tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars["loss"][0] == (10, 0.5)
    assert scalars["miou"] == [(10, 0.25)]
    assert scalars["lr"][0][0] == 20 and scalars["lr"][0][1] == pytest.approx(1e-3)
    assert math.isnan(scalars["loss"][1][1])


def test_writer_appends_and_tolerates_a_truncated_last_line(tmp_path):
    with train_logging.MetricWriter(tmp_path, console=False) as writer:
        writer.write_scalars(1, {"loss": 1.0})
    with train_logging.MetricWriter(tmp_path, console=False) as writer:
        writer.write_scalars(2, {"loss": 2.0})
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as stream:
        stream.write('{"step": 3, "lo')
    assert [r["step"] for r in train_logging.read_metrics(path)] == [1, 2]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        train_logging.read_metrics(path)


def test_bad_values_are_clear_errors(tmp_path):
    with train_logging.MetricWriter(tmp_path, console=False) as writer:
        with pytest.raises(TypeError, match="'per_class' must be a number"):
            writer.write_scalars(1, {"per_class": [0.1, 0.2]})
        with pytest.raises(ValueError, match="'overlay' must be a uint8 HxWx3"):
            writer.write_images(1, {"overlay": np.zeros((4, 4, 3), np.float32)})


def test_disabled_writer_writes_nothing(tmp_path):
    writer = train_logging.MetricWriter(tmp_path / "run", enabled=False)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert not (tmp_path / "run").exists()


def test_progress_bar_shows_step_loss_and_rate():
    stream = io.StringIO()
    bar = train_logging.ProgressBar(100, initial_step=10, file=stream)
    bar.update(20, loss=np.float32(0.25))
    bar.update(30, loss=0.125)
    bar.close()
    text = stream.getvalue()
    assert "30/100" in text
    assert "loss=0.1250" in text
    assert "step/s" in text and "s/step" in text
