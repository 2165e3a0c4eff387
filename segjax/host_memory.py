"""Returns the heap that XLA's compiler freed to the operating system, after each compile.

Compiling a large train step on the CPU (LLVM code generation for hundreds of
fusions) allocates and frees many small blocks. glibc's malloc keeps freed
heap pages resident, and the step's buffers, allocated next, come on top of
them; `malloc_trim(0)` hands those pages back in milliseconds, and compiles
are rare.

`segjax.runtime.configure` (config.runtime.trim_host_memory) calls
`trim_after_each_compile()`: a JAX monitoring listener trims after every
backend compile, before the compiled program runs. Without glibc (macOS,
musl) it does nothing.

`compiler_options()` is what segjax's own jits (train, eval, init, predict)
pass on the CPU: XLA:CPU's older elemental emitters instead of its MLIR
fusion emitters, whose transient compile memory made compilation, not the
step, a run's peak, at no cost in step time. Naming
`xla_cpu_use_fusion_emitters` in XLA_FLAGS overrides it. docs/runtime.md has
the measurements.
"""

from __future__ import annotations

import ctypes
import functools
import os

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@functools.cache
def _glibc():
    """The C library already loaded in this process, when it has malloc_trim (glibc)."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # no handle to the running process (Windows)
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """glibc's malloc_trim(0); True when memory was returned, False otherwise or without glibc."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def _on_duration_event(event: str, duration_secs: float, **kwargs) -> None:
    del duration_secs, kwargs
    if event == COMPILE_EVENT:
        release_freed_memory()


@functools.cache
def trim_after_each_compile() -> bool:
    """Registers the listener once; False when there is no glibc to trim."""
    if _glibc() is None:
        return False
    jax.monitoring.register_event_duration_secs_listener(_on_duration_event)
    return True


FUSION_EMITTERS_FLAG = "xla_cpu_use_fusion_emitters"


def compiler_options(backend: str | None = None) -> dict[str, bool]:
    """XLA options for segjax's jits on `backend` (default: JAX's): see the module docstring.

    Empty off the CPU, when XLA_FLAGS names the option, or when this jaxlib's
    XLA does not know it.
    """
    if (backend or jax.default_backend()) != "cpu":
        return {}
    if FUSION_EMITTERS_FLAG in os.environ.get("XLA_FLAGS", ""):
        return {}
    options = {FUSION_EMITTERS_FLAG: False}
    return options if _cpu_accepts(tuple(options.items())) else {}


@functools.cache
def _cpu_accepts(options: tuple) -> bool:
    """Whether XLA:CPU compiles a trivial program with `options` (an unknown one is an error)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(
            jax.ShapeDtypeStruct((), jax.numpy.float32)).compile()
    except Exception:  # pylint: disable=broad-except  (XLA raises its own runtime error type)
        return False
    return True
