"""Data parallelism: 8 CPU devices and 2 processes give the single-device result."""

import json
import socket
import threading

import jax

import numpy as np
import pytest

from segjax.config import base_config
from segjax import sharding
from tests.train.conftest import read_params, run_python

EIGHT_DEVICES = """
import json, jax, numpy as np
from segjax.data import make_train_loader
from segjax.models import registry
from segjax import sharding
from segjax.train import state as state_lib, step as step_lib
from tests.train.conftest import tiny_config

assert jax.device_count() == 8, jax.devices()
config = tiny_config(data__batch_size=8)
model = registry.build(config.model)
batch = next(make_train_loader(config.data, seed=0))
results = {}
for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
    mesh = sharding.make_mesh(config.mesh, devices)
    train_fn = step_lib.compile_train_step(mesh, model=model, loss_config=config.loss,
                                           num_classes=3, ignore_index=255)
    global_batch = sharding.global_batch(batch, mesh)
    assert len(global_batch["image"].sharding.device_set) == len(devices)
    current, _ = state_lib.create_train_state(config, model, (1, 16, 16, 1), mesh)
    for _ in range(2):
        current, metrics = train_fn(current, global_batch, jax.random.key(0))
        jax.block_until_ready(current)
    leaves = jax.tree_util.tree_leaves({"p": current.params, "b": current.batch_stats})
    results[name] = {"loss": float(sharding.local_value(metrics["loss"])),
                     "flat": np.concatenate([np.asarray(x).ravel() for x in leaves]).tolist()}
print("RESULT" + json.dumps(results))
"""


def test_eight_devices_match_one_device():
    result = run_python(EIGHT_DEVICES, timeout=300,
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert result.returncode == 0, result.stdout[-4000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT"))
    results = json.loads(line[len("RESULT"):])
    assert results["eight"]["loss"] == pytest.approx(results["one"]["loss"], rel=1e-5)
    np.testing.assert_allclose(results["eight"]["flat"], results["one"]["flat"],
                               rtol=1e-4, atol=1e-6)


def test_mesh_sizes_must_multiply_to_the_device_count():
    mesh_config = base_config().mesh
    mesh_config.data, mesh_config.model = 3, 1
    with pytest.raises(ValueError, match=r"config.mesh: data=3 x model=1 = 3 devices, but "
                                         r"there are 2 devices"):
        sharding.make_mesh(mesh_config, devices=[object(), object()])
    mesh_config.data = -1
    mesh_config.model = 3
    with pytest.raises(ValueError, match=r"config.mesh: model=3 does not divide the 2 devices"):
        sharding.make_mesh(mesh_config, devices=[object(), object()])


PROCESS = """
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
if {count} > 1:
    jax.distributed.initialize(coordinator_address="localhost:{port}", num_processes={count},
                               process_id={index}, initialization_timeout=120)
from configs import unet_isbi
from segjax.train import loop
from tests.train.conftest import tiny_config
config = unet_isbi.get_config("smoke") if {smoke} else tiny_config()
config.unlock()
config.train.steps = 3
config.train.checkpoint_every = 3
config.data.val_split = ""
loop.train_and_evaluate(config, {workdir!r})
print("DONE", jax.process_index(), jax.process_count())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _two_processes_match_one(tmp_path, smoke: bool):
    """Two gloo-joined processes (each loading its half of every batch) == one process."""
    port = _free_port()
    outputs = {}

    def launch(index, count, workdir):
        outputs[(index, count)] = run_python(
            PROCESS.format(port=port, count=count, index=index, workdir=str(workdir),
                           smoke=smoke), timeout=500)

    threads = [threading.Thread(target=launch, args=(i, 2, tmp_path / "two")) for i in range(2)]
    for thread in threads:
        thread.start()
    launch(0, 1, tmp_path / "one")
    for thread in threads:
        thread.join()
    for key, result in outputs.items():
        assert result.returncode == 0, f"process {key}:\n{result.stdout[-4000:]}"
    assert "DONE 1 2" in outputs[(1, 2)].stdout
    two, one = read_params(tmp_path / "two", 3), read_params(tmp_path / "one", 3)
    for a, b in zip(jax.tree_util.tree_leaves(two), jax.tree_util.tree_leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_two_processes_match_one_process(tmp_path):
    _two_processes_match_one(tmp_path, smoke=False)


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_smoke_config(tmp_path, isbi_root):
    _two_processes_match_one(tmp_path, smoke=True)
