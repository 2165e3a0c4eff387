"""Fixtures for the preset tests: a loopback server, a fresh cache, presets served from it.

    def test_x(publish):
        preset = publish("resnet18.tv_in1k", state_dict)   # the table now points at the server

`publish` writes the state dict as the preset's own file type (`.pth`/`.bin`
through torch.save, `.safetensors` through safetensors), serves it in the Hub's
layout (Hub presets keep their repository, commit and file name; HF_ENDPOINT
points at the server) or at a plain URL (URL presets get the file's SHA-256
prefix, as their publishers do), and replaces the table entry for the test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pytest

from segjax.pretrained import presets
from tests import torch_refs
from tests.pretrained.loopback import LoopbackServer


@pytest.fixture
def server():
    server = LoopbackServer().start()
    yield server
    server.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SEGJAX_CACHE", str(root))
    for name in ("SEGJAX_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return root


def checkpoint_bytes(state_dict, file_name: str) -> bytes:
    """`state_dict` (torch tensors) in the file format its name says."""
    torch = torch_refs.import_torch()
    if file_name.endswith(".safetensors"):
        from safetensors.torch import save
        return save({name: tensor.contiguous() for name, tensor in state_dict.items()})
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


@pytest.fixture
def publish(server, cache, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url)

    def serve(name: str, state_dict, *, model=None, redirect: bool = False,
              full_sha: bool = False) -> presets.Preset:
        preset = presets.get(name)
        data = checkpoint_bytes(state_dict, preset.source.file_name)
        digest = hashlib.sha256(data).hexdigest()
        if preset.source.kind == "hub":
            server.add_hub_file(preset.source.location, preset.source.revision,
                                preset.source.filename, data)
            source = dataclasses.replace(preset.source, sha256=digest if full_sha else "")
        else:
            url = server.add_url_file(preset.source.file_name, data)
            if redirect:
                url = url.replace("/files/", "/redirect/")
            source = presets.Source("url", url, sha256=digest if full_sha else digest[:8])
        served = dataclasses.replace(preset, source=source, model=model or preset.model)
        monkeypatch.setitem(presets.PRESETS, name, served)
        return served

    return serve
