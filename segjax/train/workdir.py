"""A training workdir's guards: one live run at a time, writable before any work is done.

`WorkdirLock(workdir)` holds `workdir/.lock` for the life of a run; a second
run on a live workdir is refused (`WorkdirBusy`) with a message naming the
holder (host, pid, start time, command). With several processes only process
0 takes it: they are one run. Two schemes, chosen by the path
(`segjax.paths.is_local`):

Local (or NFS) folder: an exclusive `fcntl.flock` on the file. The kernel
drops the lock when the holding process ends, however it ends (SIGKILL
included), so a stale lock is taken over without any clean-up.

Bucket (gs://...): an object store has no locks, so the lock is a lease
object. The holder writes `.lock` holding its host, pid, start time, command
and an expiry (`expires`, unix seconds, `lease_seconds` ahead), and a
heartbeat thread rewrites it every `refresh_seconds` with a later expiry.
Every write is conditional on the object's generation
(`segjax.paths.generations`, GCS preconditions): the first holder creates it
with create-if-absent (`if_generation_match=0`), so of two runs starting at
once exactly one creates it; a run that finds an unexpired lease is refused;
one that finds an expired lease (its holder died without releasing it) takes
it over by replacing exactly the generation it read (compare-and-swap), so
of two runs taking over at once exactly one succeeds. A refresh is
conditional on the holder's own last generation: a holder whose lease was
taken over (it stalled for longer than the lease) finds out at its next
refresh, says so on stderr, and stops refreshing; `WorkdirLock.check()`
(called by the training loop before each checkpoint) also reads the lease
back and raises `WorkdirBusy` when it is no longer this run's, so a run that
lost its workdir stops before writing a checkpoint over the new holder's.
Leaving the run deletes the lease (conditionally: never another holder's).
Guarantee: one holder at a time as long as a live holder refreshes within
`lease_seconds` and the hosts' clocks differ by much less than
`lease_seconds - refresh_seconds`; a holder killed without releasing blocks
the workdir for at most `lease_seconds`.

Whether the workdir is writable is checked before the lock is taken
(`segjax.paths.check_writable`), so a read-only directory is reported in one
line before anything else happens.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from segjax import paths

LOCK_FILE = ".lock"
LEASE_SECONDS = 120.0
REFRESH_SECONDS = 30.0


class WorkdirBusy(RuntimeError):
    """Another live process is training in this workdir."""


def _holder_record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}


def _busy(workdir, holder: str) -> WorkdirBusy:
    return WorkdirBusy(f"workdir {workdir} is in use by another run: {holder}. "
                       "Wait for it to finish, stop it, or use another --workdir.")


class WorkdirLock:
    """The lock of a workdir: `fcntl.flock` locally, a refreshed lease in a bucket."""

    def __init__(self, workdir, *, enabled: bool = True, lease_seconds: float = LEASE_SECONDS,
                 refresh_seconds: float = REFRESH_SECONDS):
        self.workdir = paths.as_path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.enabled = enabled
        self._held = None
        if not 0 < refresh_seconds < lease_seconds:
            raise ValueError(f"WorkdirLock: refresh_seconds={refresh_seconds} must be positive "
                             f"and less than lease_seconds={lease_seconds}")
        self.lease_seconds, self.refresh_seconds = float(lease_seconds), float(refresh_seconds)

    def __enter__(self) -> "WorkdirLock":
        if not self.enabled:
            return self
        held = (_FileLock(self.path) if paths.is_local(self.path) else
                _Lease(str(self.path), self.lease_seconds, self.refresh_seconds))
        held.acquire(self.workdir)
        self._held = held
        return self

    def check(self) -> None:
        """WorkdirBusy when another run has taken this run's lease over (a bucket workdir whose
        holder stalled past its lease): called before each checkpoint, so that a run that
        lost its workdir stops before writing over the new holder's files."""
        if self._held is not None and not self._held.still_held():
            raise WorkdirBusy(f"{self._held.lost}. Stopped before writing; use another "
                              "--workdir, or wait for the other run to finish and resume.")

    def __exit__(self, *exc_info) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None


class _FileLock:
    """An exclusive flock on a local lock file, whose text names the holder."""

    def __init__(self, path: Path):
        self.path, self._file, self.lost = path, None, None

    def still_held(self) -> bool:
        return True  # the kernel holds it until this process ends

    def acquire(self, workdir) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "(unknown process)"
            handle.close()
            raise _busy(workdir, holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder_record()) + "\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


class _Lease:
    """A lease object in a bucket, created and refreshed by conditional writes only."""

    def __init__(self, uri: str, lease_seconds: float, refresh_seconds: float):
        self.uri, self.store = uri, paths.generations(uri)
        self.lease_seconds, self.refresh_seconds = lease_seconds, refresh_seconds
        self.record = _holder_record()
        self.generation: int | None = None
        self.lost: str | None = None  # set when another run took the lease over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writing = threading.Lock()  # a refresh and `still_held` see one generation

    def _payload(self) -> bytes:
        record = {**self.record, "expires": time.time() + self.lease_seconds,
                  "lease_seconds": self.lease_seconds}
        return (json.dumps(record) + "\n").encode()

    def acquire(self, workdir) -> None:
        try:
            self.generation = self.store.write(self.uri, self._payload(), if_generation_match=0)
        except paths.PreconditionFailed:
            self.generation = self._take_over_if_expired(workdir)
        self._thread = threading.Thread(target=self._heartbeat, name="segjax-workdir-lease",
                                        daemon=True)
        self._thread.start()

    def _take_over_if_expired(self, workdir) -> int:
        try:
            data, seen = self.store.read(self.uri)
        except FileNotFoundError:  # released between our create and our read: create again
            return self._create_or_busy(workdir, "(a run that was just releasing it)")
        holder = data.decode(errors="replace").strip()
        try:
            expires = float(json.loads(holder)["expires"])
        except (ValueError, KeyError, TypeError):
            expires = 0.0  # not a lease this code wrote: treated as expired
        if expires > time.time():
            raise _busy(workdir, holder or "(unknown process)")
        try:
            return self.store.write(self.uri, self._payload(), if_generation_match=seen)
        except (paths.PreconditionFailed, FileNotFoundError):
            return self._create_or_busy(workdir, holder)

    def _create_or_busy(self, workdir, holder: str) -> int:
        """One more create-if-absent; a run that got there first makes this one busy."""
        try:
            return self.store.write(self.uri, self._payload(), if_generation_match=0)
        except paths.PreconditionFailed:
            try:
                holder = self.store.read(self.uri)[0].decode(errors="replace").strip()
            except FileNotFoundError:
                pass
            raise _busy(workdir, holder) from None

    def _taken_over(self) -> None:
        holder = "another run"
        try:
            holder = self.store.read(self.uri)[0].decode(errors="replace").strip() or holder
        except FileNotFoundError:
            pass
        self.lost = (f"the lease {self.uri} was taken over by another run (this one did not "
                     f"refresh it in time): {holder}; this run no longer holds the workdir")
        print(f"warning: {self.lost}", file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                with self._writing:
                    self.generation = self.store.write(self.uri, self._payload(),
                                                       if_generation_match=self.generation)
            except (paths.PreconditionFailed, FileNotFoundError):
                self._taken_over()
                return
            except Exception as error:  # pylint: disable=broad-except  # retried next beat
                print(f"warning: refreshing the lease {self.uri} failed ({error}); retrying",
                      file=sys.stderr, flush=True)

    def still_held(self) -> bool:
        """Reads the lease back: False (and `lost` set) when another run has replaced it."""
        if self.lost is None:
            with self._writing:
                try:
                    ours = self.store.read(self.uri)[1] == self.generation
                except FileNotFoundError:
                    ours = False
            if not ours:
                self._stop.set()
                self._taken_over()
        return self.lost is None

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is None:
            try:
                self.store.delete(self.uri, if_generation_match=self.generation)
            except (paths.PreconditionFailed, FileNotFoundError):
                pass
