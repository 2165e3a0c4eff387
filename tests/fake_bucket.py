"""An in-memory stand-in for a gs:// bucket, for tests that must not reach the network.

`FakeBucket` is an fsspec filesystem (fsspec's memory filesystem under the
gs/gcs protocols, so `etils.epath.Path('gs://...')` reaches it exactly as it
reaches gcsfs) with an object store's rules: an object cannot be appended to,
and `read` / `write` / `delete` carry generations with GCS's preconditions
(`segjax.paths.ObjectGenerations`), atomic under one lock. `install(monkeypatch,
mirror)` puts it in place of gcsfs and of the gs:// conditional writes for one
test; Orbax, which writes gs:// through tensorstore's gcs driver (network), is
handed the same keys under the local folder `mirror` instead
(`segjax.paths.checkpoint_path`).
"""

from __future__ import annotations

import errno
import importlib
import itertools
import threading
from pathlib import Path

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

from segjax import paths

PROTOCOLS = ("gs", "gcs")


class FakeBucket(MemoryFileSystem):
    protocol = PROTOCOLS
    root_marker = ""
    store: dict = {}
    pseudo_dirs = [""]
    _generations: dict = {}  # key -> (the stored file object, its generation)
    _lock = threading.Lock()
    _counter = itertools.count(1)

    @classmethod
    def reset(cls) -> None:
        cls.store.clear()
        cls.pseudo_dirs[:] = [""]
        cls._generations.clear()

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for protocol in PROTOCOLS:
            path = path.removeprefix(f"{protocol}://")
        return path.strip("/")

    def _open(self, path, mode="rb", *args, **kwargs):
        if "a" in mode:
            raise OSError(errno.EOPNOTSUPP, f"an object store cannot append to gs://{path}")
        return super()._open(path, mode, *args, **kwargs)

    # ------------------------------------------------------------ generations (GCS)

    def _generation(self, key: str) -> int:
        if key not in self.store:
            return 0
        stored, generation = self._generations.get(key, (None, 0))
        if stored is not self.store[key]:  # written without a precondition
            generation = next(self._counter)
            self._generations[key] = (self.store[key], generation)
        return generation

    def read(self, uri: str) -> tuple[bytes, int]:
        key = self._strip_protocol(uri)
        with self._lock:
            if key not in self.store:
                raise FileNotFoundError(uri)
            return self.cat_file(key), self._generation(key)

    def write(self, uri: str, data: bytes, *, if_generation_match: int) -> int:
        key = self._strip_protocol(uri)
        with self._lock:
            if self._generation(key) != if_generation_match:
                raise paths.PreconditionFailed(f"{uri}: generation is not {if_generation_match}")
            self.pipe_file(key, data)
            generation = next(self._counter)
            self._generations[key] = (self.store[key], generation)
            return generation

    def delete(self, uri: str, *, if_generation_match: int) -> None:
        key = self._strip_protocol(uri)
        with self._lock:
            if key not in self.store:
                raise FileNotFoundError(uri)
            if self._generation(key) != if_generation_match:
                raise paths.PreconditionFailed(f"{uri}: generation is not {if_generation_match}")
            self.rm_file(key)
            self._generations.pop(key, None)


def clear_epath_cache() -> None:
    """Forgets the filesystems etils.epath has made (call after `install`'s test too)."""
    from etils.epath import backend
    type(backend.fsspec_backend)._get_filesystem.cache_clear()


def _mirrored(mirror: Path):
    def checkpoint_path(path):
        return path if paths.is_local(path) else mirror / str(path).split("://", 1)[1]
    return checkpoint_path


def install(monkeypatch, mirror: Path) -> FakeBucket:
    """The fake in place of gs:// for one test (undone by `monkeypatch`); returns it."""
    FakeBucket.reset()
    FakeBucket.clear_instance_cache()
    registry = importlib.import_module("fsspec.registry")._registry
    for protocol in PROTOCOLS:
        monkeypatch.setitem(registry, protocol, FakeBucket)
    clear_epath_cache()
    fake = fsspec.filesystem("gs")
    monkeypatch.setitem(paths._OBJECT_STORES, "gs", fake)
    monkeypatch.setattr(paths, "checkpoint_path", _mirrored(mirror))
    return fake
