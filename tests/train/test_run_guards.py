"""What nothing may silently spoil: a refused resume changes nothing, a corrupt checkpoint falls
back to an intact one, a second run is locked out, counts are validated up front, a full disk
is one line, replayed steps are logged once (each case failed on the code before these guards)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segjax import checkpoints, evaluation
from segjax.config import ConfigError
from segjax.train import checkpoint, loop
from segjax.train.logging import read_metrics
from segjax.train.workdir import WorkdirBusy
from tests.train.conftest import REPO_ROOT, read_params, run_python, tiny_config


def _train(workdir, **overrides):
    overrides = {"train__steps": 2, "data__val_split": "", **overrides}
    return loop.train_and_evaluate(tiny_config(**overrides), workdir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4 and a best checkpoint."""
    workdir = tmp_path_factory.mktemp("trained")
    loop.train_and_evaluate(tiny_config(train__steps=4), workdir)
    return workdir


def _copy(trained, tmp_path) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


@pytest.mark.parametrize("overrides,field", [
    ({"model__width": 8}, "config.model.width: checkpoint 4, config 8"),
    ({"model__num_classes": 4}, "config.model.num_classes: checkpoint 3, config 4"),
    ({"model__norm": None}, "config.model.norm: checkpoint 'batch', config None"),
])
def test_a_refused_resume_changes_nothing(trained, tmp_path, overrides, field):
    workdir = _copy(trained, tmp_path)
    before = (workdir / checkpoints.CONFIG_FILE).read_bytes()
    with pytest.raises(checkpoint.ConfigChanged, match=f"checkpoints/4 .*{field}") as error:
        _train(workdir, train__steps=6, **overrides)
    assert "allow_config_change" in str(error.value)
    assert (workdir / checkpoints.CONFIG_FILE).read_bytes() == before
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
    loaded = checkpoints.load(workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE)
    assert loaded.config.model.width == 4
    predict_fn, _ = evaluation.predict_functions(loaded.model, loaded.variables, loaded.config)
    assert predict_fn(np.zeros((1, 16, 16, 1), np.float32)).shape == (1, 16, 16, 3)


def test_an_optimizer_change_is_refused_in_one_clear_message(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    with pytest.raises(checkpoint.ConfigChanged,
                       match=r"another optimiser than the config's \(config.optim.name: "
                             r"checkpoint 'adam', config 'sgd'\)"):
        _train(workdir, train__steps=6, optim__name="sgd")


def test_same_shapes_architecture_change_is_refused_unless_allowed(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    with pytest.raises(checkpoint.ConfigChanged,
                       match="config.model.dtype: checkpoint 'float32', config 'bfloat16'"):
        _train(workdir, train__steps=6, model__dtype="bfloat16")
    _train(workdir, train__steps=6, model__dtype="bfloat16", train__allow_config_change=True)
    stored = json.loads((workdir / checkpoints.CONFIG_FILE).read_text())
    assert stored["model"]["dtype"] == "bfloat16"
    assert checkpoint.TrainingCheckpoints(workdir, tiny_config()).latest_step() == 6


def _break(step_dir: Path, how: str) -> None:
    state = step_dir / "state"
    if how == "metadata":
        (state / "_METADATA").unlink()
    elif how == "state":
        shutil.rmtree(state)
    else:  # zero every data file of the array store
        for path in state.rglob("*"):
            if path.is_file() and path.stat().st_size > 0 and "d" in path.parent.name:
                path.write_bytes(b"\0" * path.stat().st_size)


@pytest.mark.parametrize("how", ["metadata", "state", "data"])
def test_a_corrupt_latest_checkpoint_falls_back_to_an_intact_one(trained, tmp_path, capsys, how):
    workdir = _copy(trained, tmp_path)
    _break(workdir / "checkpoints" / "4", how)
    _train(workdir, train__steps=6)
    out = capsys.readouterr().out
    assert "warning: checkpoint step 4" in out and "unreadable" in out
    assert "resumed at step 2" in out
    assert (workdir / checkpoint.CORRUPT_DIR / "4").is_dir()
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "6"]
    # Steps 3-6 retrained from step 2's intact state equal an uninterrupted run's.
    straight = tmp_path / "straight"
    loop.train_and_evaluate(tiny_config(train__steps=6, data__val_split=""), straight)
    for got, want in zip(_leaves(read_params(workdir, 6)), _leaves(read_params(straight, 6))):
        np.testing.assert_array_equal(got, want)


def test_no_intact_checkpoint_is_one_clear_error(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    _break(workdir / "checkpoints" / "4", "metadata")
    _break(workdir / "checkpoints" / "2", "state")
    with pytest.raises(checkpoint.CheckpointError, match=r"no intact checkpoint .*\[4, 2\]"):
        _train(workdir, train__steps=6)


def test_a_quarantined_workdir_stays_refused_until_start_over(trained, tmp_path, capsys):
    workdir = _copy(trained, tmp_path)
    _break(workdir / "checkpoints" / "4", "metadata")
    _break(workdir / "checkpoints" / "2", "state")
    old_metrics = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(checkpoint.CheckpointError, match="config.train.start_over=True"):
        _train(workdir, train__steps=6)
    # The same command again: the checkpoints folder is empty now, and it is still refused.
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"no intact checkpoint, only the unreadable step\(s\) \[2, 4\] .*"
                             r"config.train.start_over=True"):
        _train(workdir, train__steps=6)
    assert (workdir / "metrics.jsonl").read_text() == old_metrics
    _train(workdir, train__steps=6, train__start_over=True)
    assert "config.train.start_over: training" in capsys.readouterr().out
    assert (workdir / "metrics.before_start_over.jsonl").read_text() == old_metrics
    steps = [json.loads(line)["step"] for line in
             (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps and min(steps) <= 2 and max(steps) == 6
    assert checkpoint.TrainingCheckpoints(workdir, tiny_config()).latest_step() == 6


def test_a_resume_reports_every_changed_setting_old_to_new(trained, tmp_path, capsys):
    workdir = _copy(trained, tmp_path)
    stored = json.loads((workdir / checkpoints.CONFIG_FILE).read_text())
    learning_rate = stored["optim"]["learning_rate"]
    capsys.readouterr()
    _train(workdir, train__steps=6, optim__learning_rate=learning_rate / 2,
           train__log_every=3)
    out = capsys.readouterr().out
    assert f"config.optim.learning_rate: {learning_rate!r} -> {learning_rate / 2!r}" in out
    assert f"config.train.steps: {stored['train']['steps']!r} -> 6" in out
    assert f"config.train.log_every: {stored['train']['log_every']!r} -> 3" in out
    assert "changed setting(s)" in out and "config.model" not in out


def test_a_shape_change_with_allow_config_change_points_to_init_from(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    stored = json.loads((workdir / checkpoints.CONFIG_FILE).read_text())
    with pytest.raises(checkpoint.ConfigChanged) as refused:
        _train(workdir, train__steps=6, model__width=2 * stored["model"]["width"],
               train__allow_config_change=True)
    message = str(refused.value)
    assert "even with config.train.allow_config_change=True" in message
    assert "parameters differ at" in message and "config.model.init_from" in message
    assert "allow_config_change=True to continue" not in message


def _leaves(tree):
    import jax
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


HOLD_LOCK = """
import time, sys
from segjax.train.workdir import WorkdirLock
with WorkdirLock({workdir!r}):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_second_run_on_a_live_workdir_is_refused_and_a_stale_lock_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(workdir=str(tmp_path))],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(WorkdirBusy, match=rf"in use by another run: .*\"pid\": {holder.pid}"):
            _train(tmp_path)
        assert not (tmp_path / checkpoints.CONFIG_FILE).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    _train(tmp_path)  # the dead holder's lock is stale
    assert (tmp_path / checkpoints.CONFIG_FILE).is_file()


@pytest.mark.parametrize("key,value", [("train__checkpoint_every", 0), ("train__log_every", 0),
                                       ("train__steps", -5), ("train__eval_every", 0),
                                       ("data__batch_size", 0)])
def test_counts_and_intervals_are_validated_before_anything_is_built(tmp_path, key, value):
    dotted = "config." + key.replace("__", ".")
    with pytest.raises(ConfigError, match=f"{dotted}={value}: expected a positive integer"):
        _train(tmp_path, **{key: value})
    assert not any(tmp_path.iterdir())


def test_the_command_line_prints_one_line_for_a_bad_interval(tmp_path):
    result = run_python(f"""
import sys
from segjax import main
sys.argv = ["segjax.main", "--config", "configs/unet_isbi.py:smoke", "--workdir", {str(tmp_path)!r},
            "--config.train.checkpoint_every=0"]
main.run()
""", timeout=120)
    assert result.returncode == 2  # a usage error (segjax.cli.run)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[-1] == ("error: config.train.checkpoint_every=0: expected a positive integer")
    assert "Traceback" not in result.stdout


def test_an_unwritable_checkpoint_directory_is_reported_before_training(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoints folder should be")
    with pytest.raises(PermissionError, match=r"cannot write in .*checkpoints"):
        _train(tmp_path)
    assert not (tmp_path / checkpoints.CONFIG_FILE).exists()


def test_a_workdir_that_cannot_be_created_is_reported_before_its_lock(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("where the workdir's parent should be a folder")
    with pytest.raises(PermissionError, match=r"cannot create .*a_file/run: its parent .*a_file "
                                              r"is not writable .*another --workdir"):
        _train(blocker / "run")
    assert blocker.read_text().startswith("where")


def test_a_failed_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    original = checkpoint.TrainingCheckpoints.save

    def full_disk_after_step_2(self, step, state, data_iterator):
        if step > 2:
            self.manager.save = _raise_enospc
        return original(self, step, state, data_iterator)

    monkeypatch.setattr(checkpoint.TrainingCheckpoints, "save", full_disk_after_step_2)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"saving checkpoint step 4 .* failed \(OSError: \[Errno 28\] No "
                             r"space left on device\); the previous checkpoint: step 2 is intact"):
        _train(tmp_path, train__steps=4)
    assert read_params(tmp_path, 2)


def _raise_enospc(*args, **kwargs):
    raise OSError(28, "No space left on device")


FILL_DISK = """
import sys
from pathlib import Path
from segjax import cli
from segjax.train import loop
from tests.train.conftest import tiny_config

def fill_disk(step, state):
    if step == 2:
        with open(Path({workdir!r}) / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"x" * 65536)
            except OSError:
                pass

sys.exit(cli.invoke(lambda argv: loop.train_and_evaluate(
    tiny_config(train__steps=4, data__val_split=""), {workdir!r}, hooks=[fill_disk]), []))
"""


def test_a_full_disk_during_a_save_on_a_real_filesystem(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        workdir = mount / "run"
        result = run_python(FILL_DISK.format(workdir=str(workdir)), timeout=240)
        assert result.returncode == 1, result.stdout[-3000:]
        errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stdout[-3000:]
        assert "No space left on device" in errors[0] and "step 2 is intact" in errors[0] \
            or "disk is full" in errors[0] and "(step 2) is intact" in errors[0], errors[0]
        assert "Traceback" not in result.stdout, result.stdout[-3000:]
        (workdir / "filler").unlink()
        assert read_params(workdir, 2)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


KILL_AT_STEP_3 = """
import os, signal
from segjax.train import loop
from tests.train.conftest import tiny_config

def kill(step, state):
    if step == 3:
        os.kill(os.getpid(), signal.SIGKILL)

loop.train_and_evaluate(tiny_config(train__steps=5, train__log_every=1, data__val_split=""),
                        {workdir!r}, hooks=[kill])
"""


def test_replayed_steps_are_logged_once(tmp_path):
    result = run_python(KILL_AT_STEP_3.format(workdir=str(tmp_path)), timeout=240)
    assert result.returncode == -9, result.stdout[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    loop.train_and_evaluate(tiny_config(train__steps=5, train__log_every=1,
                                        data__val_split=""), tmp_path)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]


def test_loading_a_checkpoint_prints_no_orbax_metadata_warning(trained, caplog):
    import logging
    with caplog.at_level(logging.WARNING):
        checkpoints.read_checkpoint(trained / checkpoints.BEST_DIR / checkpoints.BEST_FILE)
        checkpoints.read_checkpoint(trained)
    assert not [r for r in caplog.records if "Metadata file does not exist" in r.getMessage()
                or "could not be restored" in r.getMessage()]
