"""Fetching checkpoint files: the Hugging Face Hub, plain HTTPS, local files; SHA-256; cache.

    path = download.fetch(preset.source, label="preset resnet50.tv_in1k")

- Hub files (`Source.kind == "hub"`) go through `huggingface_hub.hf_hub_download`
  into `$SEGJAX_CACHE/hub` (the Hub's own cache layout), from the endpoint
  `HF_ENDPOINT` names at the time of the call (default huggingface.co). A
  revision pinned to a commit that is already cached is read without any
  request. The file is checked against the preset's SHA-256 (full or prefix)
  or, without one, against the Hub's LFS object id (the SHA-256 the cache
  names the blob by).
- URL files go through urllib (redirects followed) into
  `$SEGJAX_CACHE/weights/<hash of the URL>/<file name>`. The bytes land in a
  `.partial` file beside it, which a later call resumes (HTTP Range) but never
  uses as is: only a complete file whose SHA-256 matches is renamed into place.
  A file in the cache is checked again on every use.
- A file that fails its check is deleted and the error names the file, the
  preset and both digests, in one line.
- Offline (`SEGJAX_OFFLINE=1`, or `HF_HUB_OFFLINE=1`): nothing is requested;
  a missing file is an error saying which URL to fetch and where to put it.

The cache root is `segjax.data.datasets.cache_dir()` ($SEGJAX_CACHE, default
~/.cache/segjax), shared with the datasets.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from segjax.data.datasets import cache_dir
from segjax.pretrained.presets import Source

CHUNK = 1 << 20
TRUE_VALUES = ("1", "true", "yes", "on")
LFS_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_ENDPOINT = "https://huggingface.co"


class DownloadError(RuntimeError):
    """A checkpoint file could not be fetched; the message is one line naming it."""


class IntegrityError(DownloadError):
    """A file's SHA-256 is not the expected one (the file has been removed)."""


class OfflineError(DownloadError):
    """Offline and the file is not in the cache; the message says where to put it."""


def offline() -> bool:
    """True when SEGJAX_OFFLINE or HF_HUB_OFFLINE asks for no network access."""
    return any(os.environ.get(name, "").strip().lower() in TRUE_VALUES
               for name in ("SEGJAX_OFFLINE", "HF_HUB_OFFLINE"))


def hub_cache() -> Path:
    return cache_dir() / "hub"


def url_cache() -> Path:
    return cache_dir() / "weights"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(actual: str, expected: str) -> bool:
    return actual.startswith(expected.lower())


def _integrity_error(label: str, name: str, folder: Path, actual: str,
                     expected: str) -> IntegrityError:
    kind = "SHA-256" if len(expected) == 64 else f"SHA-256 prefix ({len(expected)} digits)"
    return IntegrityError(f"{label}: {name} has SHA-256 {actual}, expected {kind} "
                          f"{expected}; the file was removed from the cache ({folder})")


def fetch(source: Source, *, label: str, log: Callable[[str], None] = print) -> Path:
    """The local path of `source`'s file, downloaded and verified if needed (module docstring).

    `label` (e.g. "preset resnet50.tv_in1k") starts every message.
    """
    if source.kind == "file":
        return _local_file(source, label)
    if source.kind == "hub":
        return _fetch_hub(source, label, log)
    return _fetch_url(source, label, log)


def _local_file(source: Source, label: str) -> Path:
    path = Path(source.location).expanduser()
    if not path.is_file():
        raise DownloadError(f"{label}: no file at {path}")
    if source.sha256:
        actual = sha256_of(path)
        if not _matches(actual, source.sha256):
            raise IntegrityError(f"{label}: {path} has SHA-256 {actual}, expected "
                                 f"{source.sha256} (the file was left in place: it is yours)")
    return path


# ----------------------------------------------------------------------------- plain URLs


def url_destination(source: Source) -> Path:
    """Where a URL's file is cached: a folder per URL (its SHA-256's first 16 digits)."""
    url = source.location.split("#", 1)[0]
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return url_cache() / key / source.file_name


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, so that processes sharing the cache download once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock, each process verifies what it reads
            pass
        yield


def _fetch_url(source: Source, label: str, log) -> Path:
    url = source.location.split("#", 1)[0]
    destination = url_destination(source)
    with _locked(destination):
        if destination.is_file():
            _verified(destination, source.sha256, label)
            return destination
        if offline():
            raise OfflineError(f"{label}: offline (SEGJAX_OFFLINE/HF_HUB_OFFLINE) and "
                               f"{source.file_name} is not in the cache: download {url} "
                               f"and put it at {destination}")
        partial = destination.with_name(destination.name + ".partial")
        log(f"{label}: downloading {url}")
        _download(url, partial, label)
        _verified(partial, source.sha256, label, shown=destination.name)
        os.replace(partial, destination)
        return destination


def _verified(path: Path, expected: str, label: str, shown: str = "") -> None:
    """Returns when `path` matches `expected` (or there is no digest); else deletes the file
    and raises IntegrityError naming it (`shown`, default its own name)."""
    if not expected:
        return
    actual = sha256_of(path)
    if _matches(actual, expected):
        return
    path.unlink(missing_ok=True)
    raise _integrity_error(label, shown or path.name, path.parent, actual, expected)


def _download(url: str, partial: Path, label: str) -> None:
    """Downloads `url` into `partial`, resuming what is there (a Range request)."""
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is not a prefix of this one
            partial.unlink()
            return _download(url, partial, label)
        raise DownloadError(f"{label}: {url} answered HTTP {error.code} ({error.reason})") \
            from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{label}: cannot reach {url} ({reason})") from None
    with response:
        resumed = have and response.status == 206
        expected = response.headers.get("Content-Length")
        expected = int(expected) + (have if resumed else 0) if expected is not None else None
        with open(partial, "ab" if resumed else "wb") as handle:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
            except (http.client.IncompleteRead, OSError) as error:
                raise DownloadError(
                    f"{label}: the download of {url} stopped after "
                    f"{handle.tell()} bytes ({type(error).__name__}); the partial file "
                    f"{partial} is resumed and verified by the next load") from None
            size = handle.tell()
    if expected is not None and size != expected:
        raise DownloadError(f"{label}: the download of {url} stopped after {size} of {expected} "
                            f"bytes; the partial file {partial} is resumed and verified by the "
                            "next load")


# ----------------------------------------------------------------------------- the Hub


def hub_url(source: Source) -> str:
    return f"{endpoint()}/{source.location}/resolve/{source.revision or 'main'}/{source.filename}"


def hub_snapshot_path(source: Source) -> Path:
    """Where the Hub cache keeps the file for its revision (a file put there is used as is)."""
    folder = "models--" + source.location.replace("/", "--")
    return hub_cache() / folder / "snapshots" / (source.revision or "main") / source.filename


def _fetch_hub(source: Source, label: str, log) -> Path:
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    url = hub_url(source)
    try:
        path = Path(huggingface_hub.hf_hub_download(
            source.location, source.filename, revision=source.revision or None,
            cache_dir=str(hub_cache()), endpoint=endpoint(), local_files_only=offline()))
    except hub_errors.LocalEntryNotFoundError:
        if offline():
            raise OfflineError(f"{label}: offline (SEGJAX_OFFLINE/HF_HUB_OFFLINE) and "
                               f"{source.filename} is not in the cache: download {url} and put "
                               f"it at {hub_snapshot_path(source)}") from None
        raise DownloadError(f"{label}: cannot reach {url} and the file is not in the "
                            "cache") from None
    except hub_errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", "?")
        raise DownloadError(f"{label}: {url} answered HTTP {status} "
                            f"({type(error).__name__})") from None
    except (OSError, ValueError, *_transport_errors()) as error:  # transfers, size checks
        message = " ".join(str(error).split())
        raise DownloadError(f"{label}: downloading {url} failed: {message}") from None
    _check_hub_file(path, source, label)
    return path


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's own errors (huggingface_hub's vendored httpx), if it has one."""
    for module in ("httpx2", "httpx"):
        try:
            return (__import__(module).HTTPError,)
        except (ImportError, AttributeError):
            continue
    return ()


def _check_hub_file(path: Path, source: Source, label: str) -> None:
    """The preset's SHA-256, else the LFS object id the cache names the blob by."""
    blob = path.resolve()
    expected = source.sha256 or (blob.name if LFS_SHA256.fullmatch(blob.name) else "")
    if not expected:
        return  # a small non-LFS file: the pinned commit is all there is to check
    actual = sha256_of(blob)
    if _matches(actual, expected):
        return
    for stale in {path, blob}:
        if stale.is_symlink() or stale.exists():
            stale.unlink()
    raise _integrity_error(label, path.name, path.parent, actual, expected)
