"""Fetching checkpoint files from the loopback server: the Hub and plain URLs, cache hits with
the server stopped, offline mode, SHA-256 failures, 404s, interrupted downloads, redirects."""

from __future__ import annotations

import hashlib
import os

import pytest

from segjax.pretrained import download
from segjax.pretrained.presets import Source

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def payload(size: int = 200_000, seed: int = 0) -> bytes:
    return bytes((seed * 131 + i * 7919) % 251 for i in range(size))


@pytest.fixture
def hub(server, cache, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    return server


def cached_files(root) -> list[str]:
    """Every file under the cache, lock files left out."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and not path.name.endswith(".lock"))


def test_hub_file_is_downloaded_verified_and_then_read_with_the_server_stopped(hub, cache):
    data = payload()
    sha = hub.add_hub_file("org/model", COMMIT, "weights/model.safetensors", data)
    source = Source("hub", "org/model", "weights/model.safetensors", COMMIT)
    path = download.fetch(source, label="preset x")
    assert path.read_bytes() == data
    assert path.resolve().name == sha  # the Hub cache names the blob by its LFS SHA-256
    assert ("GET", "/cdn/org/model/weights/model.safetensors") in hub.requests
    hub.stop()
    before = len(hub.requests)
    assert download.fetch(source, label="preset x") == path
    assert len(hub.requests) == before


def test_url_file_follows_a_redirect_and_is_read_from_the_cache_afterwards(server, cache):
    data = payload()
    url = server.add_url_file("net-0123abcd.pth", data).replace("/files/", "/redirect/")
    source = Source("url", url, sha256=hashlib.sha256(data).hexdigest()[:8])
    path = download.fetch(source, label="preset y", log=lambda m: None)
    assert path.read_bytes() == data and path.name == "net-0123abcd.pth"
    assert [r for r in server.requests if r[0] == "GET"] == [
        ("GET", "/redirect/net-0123abcd.pth"), ("GET", "/files/net-0123abcd.pth")]
    server.stop()
    assert download.fetch(source, label="preset y") == path
    assert cached_files(cache) == [str(path.relative_to(cache))]


def test_offline_mode_reads_the_cache_and_names_the_missing_file(server, cache, monkeypatch):
    data = payload()
    source = Source("url", server.add_url_file("a-12345678.pth", data),
                    sha256=hashlib.sha256(data).hexdigest())
    path = download.fetch(source, label="preset a", log=lambda m: None)
    monkeypatch.setenv("SEGJAX_OFFLINE", "1")
    requests = len(server.requests)
    assert download.fetch(source, label="preset a") == path
    missing = Source("url", server.add_url_file("b-12345678.pth", data))
    with pytest.raises(download.OfflineError) as error:
        download.fetch(missing, label="preset b")
    message = str(error.value)
    assert "\n" not in message and message.startswith("preset b: offline")
    assert missing.location in message and str(download.url_destination(missing)) in message
    assert len(server.requests) == requests


def test_hf_hub_offline_names_the_snapshot_path_to_fill(hub, cache, monkeypatch):
    hub.add_hub_file("org/model", COMMIT, "pytorch_model.bin", payload())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = Source("hub", "org/model", "pytorch_model.bin", COMMIT)
    with pytest.raises(download.OfflineError) as error:
        download.fetch(source, label="preset c")
    target = download.hub_snapshot_path(source)
    assert str(target) in str(error.value) and download.hub_url(source) in str(error.value)
    assert not [r for r in hub.requests if "org/model" in r[1]]
    # A file put where the message says is used as it is.
    target.parent.mkdir(parents=True)
    target.write_bytes(b"placed by hand")
    assert download.fetch(source, label="preset c").read_bytes() == b"placed by hand"


def test_corrupted_url_file_is_a_one_line_error_and_is_not_kept(server, cache):
    data = payload()
    url = server.add_url_file("c-12345678.pth", data)
    server.corrupt.add("/files/c-12345678.pth")
    expected = hashlib.sha256(data).hexdigest()
    source = Source("url", url, sha256=expected)
    with pytest.raises(download.IntegrityError) as error:
        download.fetch(source, label="preset resnet18.tv_in1k", log=lambda m: None)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("preset resnet18.tv_in1k: c-12345678.pth has SHA-256 ")
    assert f"expected SHA-256 {expected}" in message
    assert cached_files(cache) == []
    server.corrupt.clear()
    assert download.fetch(source, label="preset resnet18.tv_in1k",
                          log=lambda m: None).read_bytes() == data


def test_corrupted_hub_file_fails_its_lfs_sha256_and_leaves_the_cache(hub, cache):
    data = payload(seed=3)
    sha = hub.add_hub_file("org/model", COMMIT, "pytorch_model.bin", data)
    hub.corrupt.add("/cdn/org/model/pytorch_model.bin")
    source = Source("hub", "org/model", "pytorch_model.bin", COMMIT)
    with pytest.raises(download.IntegrityError) as error:
        download.fetch(source, label="preset segformer_b0.nvidia_ade20k")
    message = str(error.value)
    assert "\n" not in message and f"expected SHA-256 {sha}" in message
    assert message.startswith("preset segformer_b0.nvidia_ade20k: pytorch_model.bin has")
    assert not [f for f in cached_files(cache) if "blobs" in f or "snapshots" in f]
    hub.corrupt.clear()
    assert download.fetch(source, label="x").read_bytes() == data


def test_a_cached_file_that_no_longer_matches_is_removed(server, cache):
    data = payload()
    source = Source("url", server.add_url_file("d-12345678.pth", data),
                    sha256=hashlib.sha256(data).hexdigest()[:8])
    path = download.fetch(source, label="preset d", log=lambda m: None)
    path.write_bytes(b"bit rot" + data[7:])
    with pytest.raises(download.IntegrityError, match="preset d: d-12345678.pth has SHA-256"):
        download.fetch(source, label="preset d")
    assert not path.exists()


def test_404_names_the_preset_and_the_url(hub, cache):
    url = f"{hub.url}/files/missing-12345678.pth"
    with pytest.raises(download.DownloadError) as error:
        download.fetch(Source("url", url, sha256="12345678"), label="preset e",
                       log=lambda m: None)
    assert str(error.value) == f"preset e: {url} answered HTTP 404 (Not Found)"
    hub.add_hub_file("org/model", COMMIT, "pytorch_model.bin", payload())
    source = Source("hub", "org/model", "model.safetensors", COMMIT)
    with pytest.raises(download.DownloadError) as error:
        download.fetch(source, label="preset f")
    assert str(error.value).startswith(f"preset f: {download.hub_url(source)} answered HTTP 404")


def test_interrupted_url_download_is_resumed_and_never_trusted(server, cache):
    data = payload(300_000)
    source = Source("url", server.add_url_file("e-12345678.pth", data),
                    sha256=hashlib.sha256(data).hexdigest())
    destination = download.url_destination(source)
    partial = destination.with_name(destination.name + ".partial")
    server.truncate_next = 100_000
    with pytest.raises(download.DownloadError, match="stopped after 100000 of 300000 bytes"):
        download.fetch(source, label="preset g", log=lambda m: None)
    assert not destination.exists() and partial.stat().st_size == 100_000
    # The next load resumes (a Range request) and verifies the whole file.
    assert download.fetch(source, label="preset g", log=lambda m: None).read_bytes() == data
    assert ("GET", "/files/e-12345678.pth") in server.requests and not partial.exists()


def test_a_partial_file_with_wrong_bytes_is_not_trusted(server, cache):
    data = payload(300_000, seed=5)
    source = Source("url", server.add_url_file("f-12345678.pth", data),
                    sha256=hashlib.sha256(data).hexdigest())
    destination = download.url_destination(source)
    partial = destination.with_name(destination.name + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(os.urandom(1000))      # torn bytes from an earlier run
    with pytest.raises(download.IntegrityError):
        download.fetch(source, label="preset h", log=lambda m: None)
    assert not partial.exists() and not destination.exists()
    assert download.fetch(source, label="preset h", log=lambda m: None).read_bytes() == data


def test_interrupted_hub_download_leaves_nothing_the_next_load_trusts(hub, cache):
    """huggingface_hub resumes a dropped transfer itself; when every retry is cut too, the
    call fails and the next one starts over (its partial files are never the cache's)."""
    data = payload(300_000, seed=7)
    hub.add_hub_file("org/model", COMMIT, "pytorch_model.bin", data)
    source = Source("hub", "org/model", "pytorch_model.bin", COMMIT)
    hub.truncate_next = 50_000
    assert download.fetch(source, label="preset i").read_bytes() == data
    download.hub_snapshot_path(source).unlink()
    download.hub_snapshot_path(source).resolve().unlink(missing_ok=True)
    for blob in (cache / "hub").rglob("blobs/*"):
        blob.unlink()
    hub.truncate_next, hub.truncations = 50_000, 100
    with pytest.raises(download.DownloadError) as error:
        download.fetch(source, label="preset i")
    assert str(error.value).startswith("preset i: downloading ")
    assert not download.hub_snapshot_path(source).exists()
    assert not list((cache / "hub").rglob("blobs/[0-9a-f]*[0-9a-f]"))
    hub.truncate_next, hub.truncations = None, 1
    assert download.fetch(source, label="preset i").read_bytes() == data


def test_local_files_are_used_in_place_and_checked(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert download.fetch(Source("file", str(path), sha256=digest), label="p") == path
    with pytest.raises(download.IntegrityError, match="the file was left in place"):
        download.fetch(Source("file", str(path), sha256="0" * 64), label="p")
    assert path.exists()
