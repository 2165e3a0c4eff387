"""segjax.host_memory: the heap is trimmed after every XLA compile, before the program runs."""

import jax
import jax.numpy as jnp
import pytest

import segjax  # noqa: F401  (registers the listener)
from segjax import host_memory


def test_every_compile_trims_before_the_program_runs(monkeypatch):
    if host_memory._glibc() is None:
        pytest.skip("no glibc malloc_trim on this system")
    x = jax.block_until_ready(jnp.arange(5.0))
    events = []
    monkeypatch.setattr(host_memory, "release_freed_memory", lambda: events.append("trim"))

    def program(x):
        events.append("traced")
        return x * 3.0 + 1.0

    out = jax.jit(program)(x)
    jax.block_until_ready(out)
    assert events[:2] == ["traced", "trim"]
    assert out.tolist() == [1.0, 4.0, 7.0, 10.0, 13.0]


def test_registration_is_idempotent_and_trim_runs():
    assert host_memory.trim_after_each_compile() is host_memory.trim_after_each_compile()
    assert isinstance(host_memory.release_freed_memory(), bool)
