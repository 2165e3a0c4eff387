"""SIGTERM during training: a checkpoint at the next step boundary, exit 0, an exact resume;
Ctrl-C (SIGINT) the same, exit 130.

The signal goes to real `python -m segjax.main` processes: one process, and
one of two processes joined by `jax.distributed` (experiments/launch/local.py),
with JAX's preemption service (which owns SIGTERM there) and without it.
"""

import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.launch import local
from segjax.train import checkpoint, loop
from tests.train.conftest import REPO_ROOT, Streamed, popen_options, read_params, tiny_config

CONFIG = '''
from tests.train.conftest import tiny_config

def get_config(arg=""):
    return tiny_config(train__steps=100000, train__log_every=1, train__checkpoint_every=100000,
                       data__val_split="")
'''
PREEMPTED = r"^preempted: SIGTERM received: stopped after step (\d+) and saved checkpoint"


def _config_file(tmp_path):
    path = tmp_path / "long_run_config.py"
    path.write_text(CONFIG)
    return path


def _flat(tree):
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree_util.tree_leaves(tree)])


def test_the_watch_notices_sigterm_and_restores_the_previous_handler():
    import os
    from segjax.train.preemption import PreemptionWatch
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatch() as watch:
        assert not watch.uses_jax and not watch.should_stop(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.should_stop(2)
    assert signal.getsignal(signal.SIGTERM) == before


def test_ctrl_c_stops_like_sigterm_and_a_quick_second_one_changes_nothing(monkeypatch):
    import os
    from segjax.train import preemption
    before = signal.getsignal(signal.SIGINT)
    clock = [100.0]
    monkeypatch.setattr(preemption.time, "monotonic", lambda: clock[0])
    with preemption.PreemptionWatch() as watch:
        os.kill(os.getpid(), signal.SIGINT)
        assert watch.should_stop(1) and watch.signal_name == "SIGINT"
        clock[0] += 0.5
        os.kill(os.getpid(), signal.SIGINT)  # a double press: the same request
        assert watch.should_stop(2) and watch.signal_name == "SIGINT"
        clock[0] += 1.0
        with pytest.raises(KeyboardInterrupt):  # asked again later: abort now
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) == before


def test_an_ignored_ctrl_c_stays_ignored():
    """A background job (SIGINT ignored by its shell) does not take the terminal's Ctrl-C."""
    from segjax.train.preemption import PreemptionWatch
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with PreemptionWatch():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_training_saves_the_step_and_returns(tmp_path):
    import os

    def ctrl_c_twice(step, state):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    config = tiny_config(train__steps=6, train__checkpoint_every=100, data__val_split="")
    result = loop.train_and_evaluate(config, tmp_path, hooks=[ctrl_c_twice])
    assert result[loop.STOP_SIGNAL] == "SIGINT"
    assert result[loop.PREEMPTED].startswith("SIGINT received: stopped after step 3 and saved "
                                             "checkpoint step 3")
    assert checkpoint.TrainingCheckpoints(tmp_path, config).manager.all_steps() == [3]


def _training_past_step_3(tmp_path, workdir) -> Streamed:
    """`python -m segjax.main` on the tiny config in `workdir`, once it has logged step 3."""
    run = Streamed(subprocess.Popen(
        [sys.executable, "-m", "segjax.main", f"--config={_config_file(tmp_path)}",
         f"--workdir={workdir}"], cwd=REPO_ROOT, **popen_options()))
    run.wait_for(r"^step 3/100000", timeout=240)
    return run


@pytest.mark.slow
def test_ctrl_c_twice_exits_130_with_a_checkpoint(tmp_path):
    workdir = tmp_path / "interrupted"
    run = _training_past_step_3(tmp_path, workdir)
    run.process.send_signal(signal.SIGINT)
    run.process.send_signal(signal.SIGINT)
    assert run.finish(timeout=120) == 130, run.output[-4000:]
    stopped = int(re.search(r"^preempted: SIGINT received: stopped after step (\d+)",
                            run.output, re.M).group(1))
    assert checkpoint.TrainingCheckpoints(workdir, tiny_config()).latest_step() == stopped >= 3
    assert "Traceback" not in run.output and "KeyboardInterrupt" not in run.output


@pytest.mark.slow
def test_sigterm_checkpoints_the_next_step_exits_0_and_resumes_bit_identically(tmp_path):
    workdir = tmp_path / "preempted"
    run = _training_past_step_3(tmp_path, workdir)
    run.process.send_signal(signal.SIGTERM)
    assert run.finish(timeout=120) == 0, run.output[-4000:]
    stopped = int(re.search(PREEMPTED, run.output, re.M).group(1))
    assert stopped >= 3
    assert checkpoint.TrainingCheckpoints(workdir, tiny_config()).latest_step() == stopped
    assert "finished; outputs" not in run.output

    config = tiny_config(train__steps=stopped + 3, train__log_every=1,
                         train__checkpoint_every=100000, data__val_split="")
    loop.train_and_evaluate(config, workdir)
    loop.train_and_evaluate(config, tmp_path / "straight")
    np.testing.assert_array_equal(_flat(read_params(workdir, stopped + 3)),
                                  _flat(read_params(tmp_path / "straight", stopped + 3)))


@pytest.mark.slow
@pytest.mark.parametrize("jax_service", [True, False], ids=["jax-service", "python-handler"])
def test_sigterm_to_one_of_two_processes_stops_both_after_the_same_step(tmp_path, jax_service):
    workdir = tmp_path / "two"
    options = popen_options({"JAX_ENABLE_PREEMPTION_SERVICE": str(jax_service).lower()})
    env = options.pop("env")
    runs = [Streamed(process) for process in local.launch(
        [f"--config={_config_file(tmp_path)}", f"--workdir={workdir}"], processes=2,
        env=env, **options)]
    runs[0].wait_for(r"^step 3/100000", timeout=300)
    runs[1].process.send_signal(signal.SIGTERM)  # one host preempted, not process 0
    codes = [run.finish(timeout=180) for run in runs]
    assert codes == [0, 0], [run.output[-3000:] for run in runs]
    steps = [int(re.search(PREEMPTED, run.output, re.M).group(1)) for run in runs]
    assert steps[0] == steps[1] >= 3
    assert checkpoint.TrainingCheckpoints(workdir, tiny_config()).latest_step() == steps[0]
