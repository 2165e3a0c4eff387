"""Filesystem checks shared by training and the entry points, made before any work is done.

`check_writable(directory, ...)` answers whether a run could write in
`directory` (creating it where it does not exist) by writing and removing a
probe file in it, or in its nearest existing parent: a read-only mount, a
folder of another user or a file in the way is reported in one line naming
the directory, before a model is built, a step is taken or an evaluation is
computed. It creates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


def _nearest_existing(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_writable(*directories: str | Path, holds: str = "checkpoints and logs",
                   instead: str = "another --workdir") -> None:
    """PermissionError naming the first of `directories` that cannot be written or created.

    `holds` says what goes there and `instead` the way out, for the message.
    """
    for directory in map(Path, directories):
        existing = _nearest_existing(directory.expanduser().absolute())
        probe = existing / f".write-test-{os.getpid()}"
        try:
            if not existing.is_dir():
                raise NotADirectoryError(f"{existing} is a file, not a folder")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            reason = error.strerror or str(error)
            problem = (f"cannot write in {directory} ({reason})" if existing == directory else
                       f"cannot create {directory}: its parent {existing} is not writable "
                       f"({reason})")
            raise PermissionError(f"{problem}; {holds} go there: make it writable or use "
                                  f"{instead}") from None
