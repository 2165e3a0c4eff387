"""A training workdir's guards: one live run at a time, writable before any work is done.

`WorkdirLock(workdir)` holds an exclusive `fcntl.flock` on `workdir/.lock`
for the life of a run. The kernel drops the lock when the holding process
ends, however it ends (SIGKILL included), so a stale lock is taken over
without any clean-up; a live one refuses the second run with a message
naming the holder (host, pid, start time, command). With several processes
only process 0 takes it: they are one run.

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
