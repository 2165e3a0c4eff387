"""Preemption: a SIGTERM stops training at the next step boundary, with a checkpoint.

Cluster schedulers (Cloud TPU, GKE, Slurm) announce a preemption or a
cancellation with SIGTERM and kill the job a grace period later. The loop
asks `PreemptionWatch.should_stop(step)` after every step; when it says yes,
the loop saves a checkpoint of that step and returns without evaluating, and
`segjax.main` reports it in one line before exiting 0. The
next start with the same workdir resumes from that checkpoint, bit-identical
to a run that was never stopped (tests/train/test_preemption.py).

What JAX does with SIGTERM (jax 0.10): in a single process, nothing (the
default action kills the process). After `jax.distributed.initialize` with
the preemption service on (`jax_enable_preemption_service`, the default),
JAX's runtime installs a C-level SIGTERM handler that only records the
notice and shares it with the other processes through the coordination
service; the process is not killed, and the notice is visible only to code
that calls `jax.experimental.multihost_utils.reached_preemption_sync_point`.
Python's `signal.getsignal` still reports the default action, so a training
loop that does not ask simply ignores SIGTERM until the scheduler's SIGKILL.

So the watch uses, by case:
- several processes with JAX's preemption service: `reached_preemption_sync_point(step)`
  every step. The notice reaching any one process is propagated, and JAX
  picks one step (the largest step any process has reached, plus one) at
  which every process sees True: all processes stop after the same step.
- otherwise (one process, or the service disabled): a Python SIGTERM handler
  that sets a flag (Python runs it in the main thread between bytecodes, so
  a signal arriving inside a compile or a step is seen when it returns); with
  several processes the flags are OR-ed over processes at every step, so a
  signal reaching any one process stops all of them after the same step.
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np


def _jax_preemption_service() -> bool:
    """True when jax.distributed runs JAX's preemption sync manager (it owns SIGTERM).

    `jax.distributed.initialize` starts the manager when the
    `jax_enable_preemption_service` option is on (the default).
    """
    return jax.distributed.is_initialized() and bool(jax.config.jax_enable_preemption_service)


class PreemptionWatch:
    """Context manager noticing SIGTERM; `should_stop(step)` agrees across processes."""

    def __init__(self):
        self.received = False
        self.uses_jax = False
        self._previous = None
        self._installed = False

    def _handler(self, signum, frame) -> None:  # pylint: disable=unused-argument
        self.received = True

    def __enter__(self) -> "PreemptionWatch":
        self.uses_jax = jax.process_count() > 1 and _jax_preemption_service()
        if not self.uses_jax and threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.SIG_DFL
            signal.signal(signal.SIGTERM, previous)
            self._installed = False

    def should_stop(self, step: int) -> bool:
        """Whether to stop after `step`; the same answer on every process."""
        if self.uses_jax:
            from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
            return bool(multihost_utils.reached_preemption_sync_point(int(step)))
        if jax.process_count() == 1:
            return self.received
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
        return bool(np.any(multihost_utils.process_allgather(np.bool_(self.received))))
