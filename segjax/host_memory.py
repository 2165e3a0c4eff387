"""Returns the heap that XLA's compiler freed to the operating system, after each compile.

Compiling a large train step on the CPU (LLVM code generation for hundreds of
fusions) allocates and frees several hundred MB of small blocks. glibc's
malloc keeps freed heap pages resident, and the step's buffers, allocated
next, come on top of them: the paper U-Net's train step (572x572, batch 1)
held 550 MB of freed compiler memory when it started running, and its peak
resident memory was 2733 MB instead of 2094 MB (docs/conv.md). `malloc_trim(0)`
hands those pages back; it takes milliseconds, and compiles are rare.

`segjax` calls `trim_after_each_compile()` on import: a JAX monitoring
listener trims after every backend compile, before the compiled program runs.
Without glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools

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
