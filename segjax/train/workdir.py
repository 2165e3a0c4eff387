"""A training workdir's guards: one live run at a time, writable before any work is done.

`WorkdirLock(workdir)` holds an exclusive `fcntl.flock` on `workdir/.lock`
for the life of a run. The kernel drops the lock when the holding process
ends, however it ends (SIGKILL included), so a stale lock is taken over
without any clean-up; a live one refuses the second run with a message
naming the holder (host, pid, start time, command). With several processes
only process 0 takes it: they are one run.

`check_writable(workdir)` creates the workdir and its checkpoint directory
and writes a probe file in each, so a read-only directory is reported before
the model is built or a step is taken.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another live process is training in this workdir."""


class WorkdirLock:
    def __init__(self, workdir: str | Path, *, enabled: bool = True):
        self.path = Path(workdir) / LOCK_FILE
        self.enabled = enabled
        self._file = None

    def __enter__(self) -> "WorkdirLock":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "(unknown process)"
            handle.close()
            raise WorkdirBusy(f"workdir {self.path.parent} is in use by another run: {holder}. "
                              "Wait for it to finish, stop it, or use another --workdir.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)}) + "\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def check_writable(*directories: str | Path) -> None:
    """Creates each directory and writes a probe file in it; an error names the one that fails."""
    for directory in map(Path, directories):
        probe = directory / f".write-test-{os.getpid()}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise PermissionError(f"cannot write in {directory} ({error.strerror or error}); "
                                  "checkpoints and logs go there: make it writable or use "
                                  "another --workdir") from None
