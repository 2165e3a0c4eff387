"""Elastic resume: an FSDP run checkpointed on 8 devices continues on 2 and on 1, and 1 -> 8.

Each leg is a real training run (`train_and_evaluate`) in a process with that
many simulated CPU devices; the checkpoint restores into the new mesh's
shardings (Orbax reads each device's slices) and the data iterator continues
with the next batch. After the remaining steps the parameters equal those of
a run that never stopped (allclose: a different device count sums gradients
in another order).
"""

import shutil

import jax
import numpy as np
import pytest

from tests.train.conftest import read_params, run_python

TRAIN = """
import jax
from segjax.train import loop
from tests.train.conftest import tiny_config
assert jax.device_count() == DEVICES, jax.devices()
for workdir, steps in RUNS:
    loop.train_and_evaluate(tiny_config(
        model__width=8, model__depth=2, data__batch_size=8, data__val_split="",
        train__steps=steps, train__log_every=3, train__checkpoint_every=3,
        train__keep_checkpoints=5, mesh__param_sharding="fsdp", mesh__fsdp_min_size=0), workdir)
    print("TRAINED", workdir, steps, flush=True)
"""


def _train(devices: int, runs) -> str:
    code = TRAIN.replace("DEVICES", str(devices)).replace(
        "RUNS", repr([(str(workdir), steps) for workdir, steps in runs]))
    result = run_python(code, timeout=400,
                        env={"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def _flat(tree):
    return np.concatenate([np.asarray(x).ravel() for x in jax.tree_util.tree_leaves(tree)])


@pytest.mark.slow
def test_resume_on_another_number_of_devices_continues_the_run(tmp_path):
    _train(1, [(tmp_path / "one", 3)])
    shutil.copytree(tmp_path / "one", tmp_path / "one_to_eight")
    out = _train(8, [(tmp_path / "eight", 3), (tmp_path / "straight", 6),
                     (tmp_path / "one_to_eight", 6)])
    assert "resumed at step 3" in out and "train state fsdp" in out
    for devices in (2, 1):
        shutil.copytree(tmp_path / "eight", tmp_path / f"eight_to_{devices}")
        out = _train(devices, [(tmp_path / f"eight_to_{devices}", 6)])
        assert f"over {devices} devices" in out and "resumed at step 3" in out

    straight = _flat(read_params(tmp_path / "straight", 6))
    assert not np.allclose(straight, _flat(read_params(tmp_path / "straight", 3)))
    for name in ("eight_to_2", "eight_to_1", "one_to_eight"):
        resumed = _flat(read_params(tmp_path / name, 6))
        np.testing.assert_allclose(resumed, straight, rtol=1e-4, atol=1e-6, err_msg=name)
        print(f"{name}: max |difference| to the uninterrupted run "
              f"{np.max(np.abs(resumed - straight)):.2e}")


def test_a_checkpoint_of_another_process_count_resumes_the_data_stream_by_position(
        tmp_path, capsys):
    """Grain's iterator state is per process; with another process count the loop restarts
    the (seed, position)-determined stream at the checkpoint's step: the same batches."""
    from segjax.train import loop
    from tests.train.conftest import tiny_config

    config = tiny_config(train__steps=4, data__val_split="")
    loop.train_and_evaluate(config, tmp_path / "straight")
    loop.train_and_evaluate(tiny_config(train__steps=2, data__val_split=""), tmp_path / "moved")
    data = tmp_path / "moved" / "checkpoints" / "2" / "data"
    (data / "process_0-of-1.json").rename(data / "process_0-of-2.json")  # as if from 2 hosts
    capsys.readouterr()
    loop.train_and_evaluate(config, tmp_path / "moved")
    out = capsys.readouterr().out
    assert "written by another number of processes" in out and "resumed at step 2" in out
    assert not (tmp_path / "moved" / "checkpoints_corrupt").exists()
    np.testing.assert_array_equal(_flat(read_params(tmp_path / "moved", 4)),
                                  _flat(read_params(tmp_path / "straight", 4)))
