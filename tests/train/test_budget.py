"""A time-budgeted run finishes its schedule (segjax.train.budget), on a faked slow machine."""

import json

import pytest

from segjax import optim
from segjax.train import budget, checkpoint, loop
from segjax.train import step as step_lib
from tests.train.conftest import tiny_config

STEP_SECONDS, COMPILE_SECONDS = 5.0, 20.0


class FakeClock(list):
    """[now]; steps after `slows_after` steps take `slow_seconds` each instead."""
    slows_after: int | None = None
    slow_seconds: float = STEP_SECONDS
    steps: int = 0


@pytest.fixture
def slow_machine(monkeypatch):
    """Every train step takes 5 fake seconds, the first call of each compiled step 20 more."""
    now = FakeClock([0.0])
    compiled = step_lib.compile_train_step

    def slow_compile(*args, **kwargs):
        step = compiled(*args, **kwargs)
        calls = [0]

        def slow_step(*step_args):
            slow = now.slows_after is not None and now.steps >= now.slows_after
            now[0] += (now.slow_seconds if slow else STEP_SECONDS) + (
                COMPILE_SECONDS if calls[0] == 0 else 0.0)
            calls[0] += 1
            now.steps += 1
            return step(*step_args)

        return slow_step

    monkeypatch.setattr(step_lib, "compile_train_step", slow_compile)
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    return now


def _learning_rates(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/learning_rate"] for r in records if "train/learning_rate" in r}


def test_a_slow_machine_still_ends_the_schedule(tmp_path, slow_machine, capsys):
    """150 s for 40 steps of 5 s: the plan after step 11 (25 s + 10 x 5 s; 20 s set aside for
    the second compilation) fits floor(0.95 * 55 / 5) = 10 more steps: 21 in all. Before: the
    budget cut the cosine at step 30 with the learning rate at 15% of its peak."""
    config = tiny_config(train__steps=40, train__log_every=5, train__checkpoint_every=100,
                         train__eval_every=100, train__max_minutes=2.5,
                         optim__schedule="cosine", optim__learning_rate=0.01)
    result = loop.train_and_evaluate(config, tmp_path)
    assert slow_machine[0] <= 150.0
    final = optim.make_schedule(config.optim, 21)(20)
    assert final < 0.01 * 0.01  # the cosine's last step: under 1% of the peak
    rates = _learning_rates(tmp_path)
    assert max(rates) == 21 and rates[21] == pytest.approx(float(final))
    saved = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert saved["step"] == 21 and result["miou"] == pytest.approx(saved["miou"])
    assert saved["training"] == {"steps": 21, "schedule_steps": 21, "config_steps": 40,
                                 "max_minutes": 2.5,
                                 "learning_rate": pytest.approx(float(final))}
    output = capsys.readouterr().out
    assert ("time budget: config.train.max_minutes=2.5; steps 2-11 took 5 s each (the first, "
            "with compilation, 25 s); the schedule now runs over 21 steps instead of "
            "config.train.steps=40") in output
    assert "trained 21 steps (schedule over 21, config.train.steps=40); final learning rate" \
        in output


def test_a_machine_that_slows_after_the_plan_still_ends_the_schedule(tmp_path, slow_machine,
                                                                     capsys):
    """The 21-step plan after step 11, then from step 13 on 7 s a step (another job started).
    The review at log step 15 measures steps 13-15 (7 s; step 12 compiled the new schedule):
    121 s + 6 x 7 s > 150 s, so it plans again: floor(0.95 x (150 - 121 - 18) / 7) = 1 more
    step, 16 in all, compiled once more (27 s): 148 s. Without the review the run passed its
    budget at step 20 with the schedule cut before its end."""
    slow_machine.slows_after, slow_machine.slow_seconds = 12, 7.0
    config = tiny_config(train__steps=40, train__log_every=5, train__checkpoint_every=100,
                         train__eval_every=100, train__max_minutes=2.5,
                         optim__schedule="cosine", optim__learning_rate=0.01)
    loop.train_and_evaluate(config, tmp_path)
    assert slow_machine[0] == pytest.approx(148.0)
    final = optim.make_schedule(config.optim, 16)(15)
    assert final < 0.01 * 0.01
    rates = _learning_rates(tmp_path)
    assert max(rates) == 16 and rates[16] == pytest.approx(float(final))
    saved = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert saved["training"]["steps"] == saved["training"]["schedule_steps"] == 16
    output = capsys.readouterr().out
    assert "the schedule now runs over 21 steps" in output
    assert ("time budget: steps 13-15 took 7 s each, so 21 steps no longer fit "
            "config.train.max_minutes=2.5; the schedule now runs over 16 steps") in output
    assert "max_minutes=2.5 reached" not in output


def test_the_plan_survives_a_resume(tmp_path, slow_machine):
    """Stopped at step 15 (checkpoint), resumed: the run keeps the 21-step schedule."""
    config = tiny_config(train__steps=40, train__log_every=5, train__checkpoint_every=15,
                         train__eval_every=100, train__max_minutes=2.5,
                         optim__schedule="cosine", optim__learning_rate=0.01, data__val_split="")
    with pytest.raises(_Stop):
        loop.train_and_evaluate(config, tmp_path, hooks=[_stop_at(15)])
    saver = checkpoint.TrainingCheckpoints(tmp_path, config)
    assert saver.latest_step() == 15
    saver.close()
    slow_machine[0] = 0.0
    loop.train_and_evaluate(config, tmp_path)
    rates = _learning_rates(tmp_path)
    assert max(rates) == 21
    assert rates[21] == pytest.approx(float(optim.make_schedule(config.optim, 21)(20)))


class _Stop(Exception):
    pass


def _stop_at(stop_step):
    def hook(step, state):
        del state
        if step == stop_step:
            raise _Stop()
    return hook
