"""Test set-up: paths to the shared real datasets, and the test process's runtime.

Tests that need several CPU devices run in a subprocess with XLA_FLAGS set
(see tests/train/test_sharding.py); the main test process keeps one device.

The test process is an entry point like `segjax.main`: it applies segjax's
default runtime settings (`segjax.runtime.configure`) and, because tests make
keys with `jax.random.PRNGKey` directly, also makes 'rbg' JAX's default PRNG
(XLA:CPU compiles threefry draws for minutes in a model's init).
"""

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    del config
    import jax
    from segjax import runtime
    jax.config.update("jax_default_prng_impl", "rbg")
    runtime.configure()

REPO_ROOT = Path(__file__).resolve().parent.parent
# The real datasets: ../shared/data next to the checkout (CI), or the folder SEGJAX_DATA names
# (a git worktree elsewhere). The notebooks' tests hand the same folder to the kernels.
SHARED_DATA = Path(os.environ.get("SEGJAX_DATA") or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def isbi_root() -> Path:
    root = SHARED_DATA / "isbi2012_em"
    if not root.is_dir():
        pytest.skip(f"ISBI 2012 data not found at {root}")
    return root


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    root = SHARED_DATA / "camvid"
    if not root.is_dir():
        pytest.skip(f"CamVid data not found at {root}")
    return root


@pytest.fixture(scope="session")
def random_variables():
    """`random_variables(model, x, seed=0)`: variables of `model` for input `x`, without init.

    Fills the shapes of `jax.eval_shape(model.init, ...)` with NumPy draws (kernels
    N(0, 1/fan_in), other leaves N(0, 0.1^2)): XLA:CPU took ~70 s to compile the
    init of even a width-4 U-Net on the shared machines, while apply compiles in ~2 s.
    The draw is experiments/export_canon.py's (its export table uses it too).
    """
    from experiments.export_canon import random_variables as make
    return make


@pytest.fixture
def native_conv():
    """Trace convolutions as XLA convolutions (not the CPU matmul formulation)."""
    from segjax.ops import conv as conv_ops
    previous = conv_ops.implementation()
    conv_ops.set_default_implementation("native")
    yield
    conv_ops.set_default_implementation(previous)
