"""The training loop in-process on tiny synthetic data: resume, NaN stop, bad labels."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from segjax.train import checkpoint, loop
from tests.train.conftest import read_params, run_python, tiny_config

KILL_AT_STEP_2 = """
import os, signal
from segjax.train import loop
from tests.train.conftest import tiny_config

def kill_after_checkpoint(step, state):
    if step == 2:
        os.kill(os.getpid(), signal.SIGKILL)

loop.train_and_evaluate(tiny_config(train__steps=6, data__val_split=""), {workdir!r},
                        hooks=[kill_after_checkpoint])
"""


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    killed = tmp_path / "killed"
    result = run_python(KILL_AT_STEP_2.format(workdir=str(killed)), timeout=240)
    assert result.returncode == -9, result.stdout[-3000:]
    assert checkpoint.TrainingCheckpoints(killed, tiny_config()).latest_step() == 2

    config = tiny_config(train__steps=6, data__val_split="")
    loop.train_and_evaluate(config, killed)
    loop.train_and_evaluate(config, tmp_path / "straight")
    resumed, straight = read_params(killed, 6), read_params(tmp_path / "straight", 6)
    np.testing.assert_array_equal(_flat(resumed), _flat(straight))
    assert not np.array_equal(_flat(resumed), _flat(read_params(killed, 4)))


def _leaves(tree):
    import jax
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _flat(tree):
    return np.concatenate([x.ravel() for x in _leaves(tree)])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = loop._next_batch

    def poisoned(loader, mesh, config, step):
        batch = original(loader, mesh, config, step)
        if step == 3:
            batch = {**batch, "image": batch["image"] * jnp.nan}
        return batch

    monkeypatch.setattr(loop, "_next_batch", poisoned)
    config = tiny_config(train__steps=6, train__log_every=1)
    with pytest.raises(loop.TrainingDiverged, match=r"not finite .* at step 3.*Last good "
                                                    r"checkpoint: step 2 in .*checkpoints"):
        loop.train_and_evaluate(config, tmp_path)
    manager = checkpoint.TrainingCheckpoints(tmp_path, config)
    assert manager.manager.all_steps() == [2]
    assert np.isfinite(_flat(read_params(tmp_path, 2))).all()


def test_nan_between_log_steps_is_caught_before_saving(tmp_path, monkeypatch):
    original = loop._next_batch

    def poisoned(loader, mesh, config, step):
        batch = original(loader, mesh, config, step)
        return {**batch, "image": batch["image"] * jnp.nan} if step == 1 else batch

    monkeypatch.setattr(loop, "_next_batch", poisoned)
    config = tiny_config(train__steps=4, train__log_every=10, train__checkpoint_every=2)
    with pytest.raises(loop.TrainingDiverged, match=r"at step 1;.*Last good checkpoint: none"):
        loop.train_and_evaluate(config, tmp_path)
    assert checkpoint.TrainingCheckpoints(tmp_path, config).latest_step() is None


def test_nonfinite_weights_are_never_evaluated_or_kept_as_best(tmp_path, monkeypatch):
    """Weights that turn NaN while the loss stays finite (the loss is computed before the
    update) stop the run at the next evaluation, before the best checkpoint is written."""
    import jax
    from segjax.train import step as step_lib
    compile_train_step = step_lib.compile_train_step

    def poisoning_compile(*args, **kwargs):
        train_step = compile_train_step(*args, **kwargs)

        def poisoned(state, batch, rng):
            state, metrics = train_step(state, batch, rng)
            if int(state.step) == 1:
                state = state.replace(params=jax.tree_util.tree_map(
                    lambda x: x * jnp.nan, state.params))
            return state, metrics
        return poisoned

    monkeypatch.setattr(step_lib, "compile_train_step", poisoning_compile)
    config = tiny_config(train__steps=3, train__log_every=10, train__checkpoint_every=10,
                         train__eval_every=1)
    with pytest.raises(loop.TrainingDiverged, match=r"the weights \(params/batch_stats\) not "
                                                    r"finite .* at step 1;"):
        loop.train_and_evaluate(config, tmp_path)
    assert checkpoint.best_record(tmp_path) is None
    assert not (tmp_path / "eval_metrics.json").exists()


def test_save_best_refuses_nonfinite_weights(tmp_path):
    variables = {"params": {"w": np.array([1.0, np.inf], np.float32)}, "batch_stats": {}}
    with pytest.raises(checkpoint.CheckpointError, match=r"best checkpoint of step 7 not "
                                                         r"saved: variable params/w holds NaN"):
        checkpoint.save_best(tmp_path, variables, tiny_config(), step=7, miou=0.5)
    assert checkpoint.best_record(tmp_path) is None


def test_a_damaged_best_checkpoint_is_moved_aside_and_the_run_resumes(tmp_path, capsys):
    loop.train_and_evaluate(tiny_config(train__steps=2, train__eval_every=2), tmp_path)
    assert checkpoint.best_record(tmp_path)["step"] == 2
    metadata = tmp_path / "checkpoints_best" / "variables" / "metadata" / "metadata"
    metadata.write_text('{"format": "segjax.vari')  # a write cut short
    capsys.readouterr()
    loop.train_and_evaluate(tiny_config(train__steps=4, train__eval_every=2), tmp_path)
    out = capsys.readouterr().out
    assert (f"warning: the best checkpoint {tmp_path}/checkpoints_best/variables is unreadable "
            "(JSONDecodeError") in out
    assert f"moved to {tmp_path}/checkpoints_corrupt/best, the best mIoU starts afresh" in out
    assert "resumed at step 2" in out
    assert (tmp_path / "checkpoints_corrupt" / "best" / "variables").is_dir()
    assert checkpoint.best_record(tmp_path)["step"] == 4


def test_labels_outside_num_classes_are_named(tmp_path):
    config = tiny_config(data__synthetic__num_classes=5)
    with pytest.raises(ValueError, match=r"training batch of step 1: label values \[3, 4\] "
                                         r"are outside \[0, 3\)"):
        loop.train_and_evaluate(config, tmp_path)


def test_tiny_run_learns_and_writes_its_outputs(tmp_path):
    config = tiny_config(train__steps=30, train__log_every=10, train__eval_every=30,
                         train__checkpoint_every=10, optim__learning_rate=0.02)
    result = loop.train_and_evaluate(config, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result["pixel_accuracy"] > 0.8
    saved = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert saved["step"] == 30 and saved["miou"] == pytest.approx(result["miou"])
    assert checkpoint.best_record(tmp_path)["step"] == 30
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["20", "30"]


def test_max_minutes_stops_at_the_next_log_step_and_saves(tmp_path):
    config = tiny_config(train__steps=1000, train__log_every=2, train__checkpoint_every=500,
                         train__max_minutes=1e-6)
    loop.train_and_evaluate(config, tmp_path)
    assert checkpoint.TrainingCheckpoints(tmp_path, config).manager.all_steps() == [2]
    assert json.loads((tmp_path / "eval_metrics.json").read_text())["step"] == 2


def test_the_train_step_is_traced_once(tmp_path, monkeypatch):
    """Its metric names are the keys of its output; nothing traces it a second time."""
    from segjax.train import step as step_lib
    traced = []
    original = step_lib.train_step

    def counted(state, batch, rng, **kwargs):
        traced.append(tuple(batch["image"].shape))
        return original(state, batch, rng, **kwargs)

    monkeypatch.setattr(step_lib, "train_step", counted)
    loop.train_and_evaluate(tiny_config(train__steps=4, data__val_split=""), tmp_path)
    assert traced == [(4, 16, 16, 1)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/cross_entropy", "train/grad_norm"} <= set(records[-1])
