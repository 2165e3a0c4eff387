"""Preemption: a SIGTERM (or Ctrl-C) stops training at the next step boundary, with a checkpoint.

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

Ctrl-C (SIGINT) is handled like SIGTERM by the Python handler (JAX's service
does not own it): the run stops after the current step with a checkpoint, and
`segjax.main` exits 130, the shell's status for an interrupt. A second Ctrl-C
within `REPEAT_SECONDS` of the first is the same request (a double press) and
changes nothing; a later one aborts at once (KeyboardInterrupt, no checkpoint
of the current step), for a user who will not wait for the step to end. A
SIGINT that the process inherited as ignored (a shell's background job) stays
ignored.
"""

from __future__ import annotations

import signal
import threading
import time

import jax
import numpy as np


def _jax_preemption_service() -> bool:
    """True when jax.distributed runs JAX's preemption sync manager (it owns SIGTERM).

    `jax.distributed.initialize` starts the manager when the
    `jax_enable_preemption_service` option is on (the default).
    """
    return jax.distributed.is_initialized() and bool(jax.config.jax_enable_preemption_service)


REPEAT_SECONDS = 1.0  # a second Ctrl-C sooner than this is the same request


class PreemptionWatch:
    """Context manager noticing SIGTERM and SIGINT; `should_stop(step)` agrees across processes.

    `signal_name` is the first signal this process received ('SIGTERM' when
    another process's signal, or JAX's preemption service, stops the run).
    """

    def __init__(self):
        self.received = False
        self.uses_jax = False
        self.signal_name = "SIGTERM"
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:  # pylint: disable=unused-argument
        now = time.monotonic()
        if self.received:
            if (signum == signal.SIGINT and self.signal_name == "SIGINT"
                    and now - self._first_at > REPEAT_SECONDS):
                raise KeyboardInterrupt  # asked twice: abort without waiting for the step
            return
        self.received, self.signal_name, self._first_at = (
            True, signal.Signals(signum).name, now)

    def _signals(self) -> tuple[int, ...]:
        """The signals this watch handles: SIGINT, and SIGTERM unless JAX's service owns it."""
        return (signal.SIGINT,) if self.uses_jax else (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> "PreemptionWatch":
        self.uses_jax = jax.process_count() > 1 and _jax_preemption_service()
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals():
                previous = signal.getsignal(signum)
                if signum == signal.SIGINT and previous == signal.SIG_IGN:
                    continue  # a background job's Ctrl-C is the foreground's, not ours
                self._previous[signum] = previous
                signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def should_stop(self, step: int) -> bool:
        """Whether to stop after `step`; the same answer on every process."""
        if jax.process_count() == 1:
            return self.received
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
        stop = bool(np.any(multihost_utils.process_allgather(np.bool_(self.received))))
        if self.uses_jax:
            stop = bool(multihost_utils.reached_preemption_sync_point(int(step))) or stop
        return stop
