"""Where a run writes: the one path layer for local folders and bucket URIs (gs://...).

Every file a training run writes (checkpoints, config.json, splits.json,
metrics.jsonl, TensorBoard events, overlays, eval_metrics.json, the workdir
lock) is named by a path from `workdir_path` and written through the helpers
here, so the same code serves a local (or NFS) folder and an object store:

- `workdir_path(path)`: a local path becomes an absolute `pathlib.Path`
  (resolved, as runs always did: local behaviour is unchanged); a URI
  (`gs://bucket/run`, anything with `://`) becomes an `etils.epath.Path`,
  never resolved. epath is what Orbax uses: it reaches gs:// through gcsfs
  (or TensorFlow's gfile when installed).
- `is_local(path)`: False for a URI. `as_path(path)` and `absolute(path)`:
  the same types for paths given by a caller (not resolved).
- `write_text(path, text)`: a complete file or nothing. Local: written to a
  temporary name beside it, then renamed over it. Object store: one put,
  which is atomic there (readers see the old object or the new one).
- `remove_tree`, `move_tree`: a folder (or key prefix) removed / moved. On an
  object store a move is copy-then-delete, object by object: not atomic.
- `ObjectGenerations` / `generations(path)`: conditional writes on an object
  store (GCS's object generations and preconditions): create-if-absent
  (`if_generation_match=0`), replace or delete only the generation one read
  (compare-and-swap). The bucket workdir lock (`segjax.train.workdir`) is
  built on them. gs:// uses google-cloud-storage; tests register an
  in-memory fake with `register_object_store`.
- `checkpoint_path(path)`: the path Orbax is handed: the path itself (Orbax
  writes gs:// through tensorstore's gcs driver).

`check_writable(directory, ...)` answers whether a run could write in
`directory` (creating it where it does not exist) by writing and removing a
probe file in it, or in its nearest existing parent: a read-only mount, a
folder of another user or a file in the way is reported in one line naming
the directory, before a model is built, a step is taken or an evaluation is
computed. It creates nothing. In a bucket it writes and deletes a probe
object under the workdir's prefix (an object store has no folders to create).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

URI_MARK = "://"


def is_local(path) -> bool:
    """True for a local (or mounted) path, False for a URI such as gs://bucket/run."""
    return URI_MARK not in os.fspath(path)


def scheme(path) -> str:
    """'gs' for gs://bucket/run; '' for a local path."""
    text = os.fspath(path)
    return text.split(URI_MARK, 1)[0] if URI_MARK in text else ""


def as_path(path):
    """A local path as a `pathlib.Path` (as given); a URI as an `etils.epath.Path`."""
    if is_local(path):
        return Path(path)
    from etils import epath
    return epath.Path(os.fspath(path))


def workdir_path(path):
    """A local path as an absolute resolved `pathlib.Path`; a URI as an `etils.epath.Path`."""
    return Path(path).resolve() if is_local(path) else as_path(path)


def absolute(path):
    """A local path made absolute (not resolved); a URI as an `etils.epath.Path`."""
    return Path(path).absolute() if is_local(path) else as_path(path)


def checkpoint_path(path):
    """The path Orbax reads and writes for `path`: the path itself, URI or local."""
    return path


def write_text(path, text: str) -> None:
    """Writes `text` to `path` whole: a temporary file renamed over it (local), or one put."""
    if not is_local(path):
        as_path(path).write_text(text, encoding="utf-8")
        return
    path = Path(path)
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    fresh.write_text(text, encoding="utf-8")
    os.replace(fresh, path)


def remove_tree(path) -> None:
    """Removes a folder (local) or every object under a prefix (object store)."""
    if is_local(path):
        shutil.rmtree(path)
    else:
        as_path(path).rmtree()


def move_tree(source, target) -> None:
    """Moves a folder; on an object store each object is copied, then the source deleted."""
    if is_local(source):
        shutil.move(str(source), str(target))
        return
    source, target = as_path(source), as_path(target)
    for item in files_under(source):
        copy = target / item.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        item.copy(copy, overwrite=True)
    source.rmtree()


def files_under(folder):
    """The files under `folder`, at any depth (in a bucket: listed level by level, since
    epath's recursive glob and walk do not work there)."""
    for item in folder.iterdir():
        if item.is_dir():
            yield from files_under(item)
        else:
            yield item


# --------------------------------------------------------------------------------------
# Conditional writes on an object store.

class PreconditionFailed(RuntimeError):
    """The object's generation was not the one a conditional write or delete required."""


class ObjectGenerations(Protocol):
    """An object store's generations: every write of an object gives it a new number.

    `write(..., if_generation_match=0)` creates only when absent;
    `if_generation_match=g` replaces only generation g. Both are atomic on
    the store (GCS preconditions) and raise `PreconditionFailed` otherwise.
    """

    def read(self, uri: str) -> tuple[bytes, int]:
        """(data, generation); FileNotFoundError when there is no such object."""

    def write(self, uri: str, data: bytes, *, if_generation_match: int) -> int:
        """Writes `data` when the precondition holds; returns the new generation."""

    def delete(self, uri: str, *, if_generation_match: int) -> None:
        """Deletes the object when it is still generation `if_generation_match`."""


class _GcsGenerations:
    """Google Cloud Storage's generation preconditions, through google-cloud-storage."""

    def __init__(self):
        self._client = None

    def _bucket_and_name(self, uri: str):
        try:
            from google.cloud import storage
        except ImportError:
            raise ImportError(f"the lock of a gs:// workdir ({uri}) needs google-cloud-storage "
                              "(pip install segjax[gcs]: gcsfs, google-cloud-storage)") from None
        if self._client is None:
            self._client = storage.Client()
        bucket, _, name = uri.split(URI_MARK, 1)[1].partition("/")
        return self._client.bucket(bucket), name

    def _blob(self, uri: str):
        bucket, name = self._bucket_and_name(uri)
        return bucket.blob(name)

    def _run(self, call):
        from google.api_core import exceptions
        try:
            return call()
        except exceptions.PreconditionFailed as error:
            raise PreconditionFailed(str(error)) from None
        except exceptions.NotFound as error:
            raise FileNotFoundError(str(error)) from None

    def read(self, uri: str) -> tuple[bytes, int]:
        bucket, name = self._bucket_and_name(uri)
        while True:
            blob = self._run(lambda: bucket.get_blob(name))  # its generation, or None
            if blob is None:
                raise FileNotFoundError(uri)
            try:  # the bytes of that generation; rewritten in between: read again
                return self._run(lambda: blob.download_as_bytes(
                    if_generation_match=blob.generation)), int(blob.generation)
            except (PreconditionFailed, FileNotFoundError):
                continue

    def write(self, uri: str, data: bytes, *, if_generation_match: int) -> int:
        blob = self._blob(uri)
        self._run(lambda: blob.upload_from_string(data, if_generation_match=if_generation_match))
        return int(blob.generation)

    def delete(self, uri: str, *, if_generation_match: int) -> None:
        blob = self._blob(uri)
        self._run(lambda: blob.delete(if_generation_match=if_generation_match))


_OBJECT_STORES: dict[str, ObjectGenerations] = {"gs": _GcsGenerations()}


def register_object_store(uri_scheme: str, store: ObjectGenerations | None) -> None:
    """Makes `store` the conditional writes of `uri_scheme`:// paths (None removes it)."""
    if store is None:
        _OBJECT_STORES.pop(uri_scheme, None)
    else:
        _OBJECT_STORES[uri_scheme] = store


def generations(path) -> ObjectGenerations:
    """The conditional writes of the object store `path` is in (ValueError when unknown)."""
    store = _OBJECT_STORES.get(scheme(path))
    if store is None:
        raise ValueError(f"{path}: no conditional writes for {scheme(path)}:// paths, which a "
                         f"workdir lock needs; use gs:// or a local folder")
    return store


# --------------------------------------------------------------------------------------
# Writability, checked before any work.

def _nearest_existing(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _message(directory, problem: str, holds: str, instead: str) -> str:
    return f"{problem}; {holds} go there: make it writable or use {instead}"


def _check_bucket_writable(directory, holds: str, instead: str) -> None:
    probe = workdir_path(directory) / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except Exception as error:  # pylint: disable=broad-except  # each store its own types
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise PermissionError(_message(directory, f"cannot write in {directory} ({reason})",
                                       holds, instead)) from None


def check_writable(*directories, holds: str = "checkpoints and logs",
                   instead: str = "another --workdir") -> None:
    """PermissionError naming the first of `directories` that cannot be written or created.

    `holds` says what goes there and `instead` the way out, for the message.
    """
    for directory in directories:
        if not is_local(directory):
            _check_bucket_writable(directory, holds, instead)
            continue
        directory = Path(directory)
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
            raise PermissionError(_message(directory, problem, holds, instead)) from None
