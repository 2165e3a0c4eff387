"""segjax.host_memory: the heap is trimmed after every XLA compile, before the program runs;
segjax's jits compile with XLA:CPU's elemental emitters."""

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


def test_compiler_options_turn_off_cpu_fusion_emitters_unless_overridden(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert host_memory.compiler_options("cpu") == {"xla_cpu_use_fusion_emitters": False}
    assert host_memory.compiler_options("gpu") == {}
    assert host_memory.compiler_options("tpu") == {}
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
    assert host_memory.compiler_options("cpu") == {}


def test_compiler_options_compile_and_an_unknown_option_is_dropped(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    options = host_memory.compiler_options("cpu")
    out = jax.jit(lambda x: jnp.exp(x) * 2.0, compiler_options=options)(jnp.zeros(3))
    assert out.tolist() == [2.0, 2.0, 2.0]
    assert host_memory._cpu_accepts(tuple(options.items()))
    assert not host_memory._cpu_accepts((("xla_cpu_no_such_option", True),))
