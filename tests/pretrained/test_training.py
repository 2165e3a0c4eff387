"""Training from presets: `config.model.init_from = "preset:<name>"`.

The fine-tuning configs' smoke variants (`configs/deeplabv3plus_camvid.py:finetune,smoke`,
`configs/segformer_b0_camvid.py:finetune,smoke`) start from their ImageNet encoder presets
served by the loopback server (random weights in the real layouts); a whole-model preset
loads into a model with another class count; a run that started from a preset resumes with
the server stopped and the cache emptied (nothing is downloaded again).
"""

from __future__ import annotations

import importlib
import json
import shutil

import jax
import numpy as np
import pytest

from segjax import pretrained
from segjax.config import base_config
from segjax.models import registry
from segjax.pretrained import weights
from segjax.train import loop, state as state_lib
from tests import torch_refs
from tests.models import transformer_refs as refs


def quiet(message: str) -> None:
    del message


def camvid_config(name: str, arg: str, camvid_root):
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    config.data.root = str(camvid_root)
    return config


def create(config, *, init_from: bool = True):
    model = registry.build(config.model)
    shape = (1, *config.data.crop, int(config.data.image_channels))
    state, _ = state_lib.create_train_state(config, model, shape, init_from=init_from)
    return {"params": state.params, "batch_stats": state.batch_stats}


def split(tree, part: str = "encoder"):
    """(flat variables under `part`, flat variables elsewhere) of a variables tree."""
    inside, outside = {}, {}
    for path, value in weights.flat(tree).items():
        (inside if len(path) > 1 and path[1] == part else outside)[path] = np.asarray(value)
    return inside, outside


def assert_trees_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for path in want:
        np.testing.assert_array_equal(got[path], want[path], err_msg=weights.show(path))


def test_deeplabv3plus_finetune_smoke_starts_its_encoder_from_the_resnet50_preset(
        publish, camvid_root):
    torchvision = torch_refs.import_torchvision()
    reference = torch_refs.randomize_bn(torchvision.models.resnet50(), seed=11).eval()
    publish("resnet50.tv_in1k", reference.state_dict())
    config = camvid_config("deeplabv3plus_camvid", "finetune,smoke", camvid_root)
    assert (config.model.init_from, config.model.init_from_part) == \
        ("preset:resnet50.tv_in1k", "encoder")
    assert (config.optim.name, config.optim.learning_rate) == ("sgd", 0.01)
    fresh = create(config, init_from=False)
    started = create(config)
    expected = pretrained.load("resnet50.tv_in1k", log=quiet).variables   # from the cache
    encoder, rest = split(started)
    assert_trees_equal({(p[0],) + p[2:]: v for p, v in encoder.items()},
                       {p: np.asarray(v) for p, v in weights.flat(expected).items()})
    assert_trees_equal(rest, split(fresh)[1])   # the decoder keeps its initialisation
    # The preset's stem is not what a fresh initialisation draws.
    assert not np.allclose(encoder[("params", "encoder", "conv1", "kernel")],
                           split(fresh)[0][("params", "encoder", "conv1", "kernel")])


def test_a_whole_model_preset_with_other_classes_reinitialises_the_classifier_only(
        publish, capsys):
    publish("segformer_b0.nvidia_ade20k", refs.hf_segformer("b0", 150, seed=12).state_dict())
    config = base_config()
    config.model.name, config.model.style, config.model.num_classes = "segformer_b0", "hf", 11
    config.data.crop = (64, 64)
    config.model.init_from = "preset:segformer_b0.nvidia_ade20k"
    # What create_train_state applies (checked through it with an encoder preset above).
    variables = state_lib.init_variables(registry.build(config.model), state_lib.init_key(0),
                                         (1, 64, 64, 3))
    fresh = weights.flat(variables)
    started = weights.flat(pretrained.init_from(variables, config.model))
    lines = [line for line in capsys.readouterr().out.splitlines() if "re-initialised" in line]
    assert len(lines) == 1 and "(11 classes; the checkpoint has 150)" in lines[0]
    expected = weights.flat(pretrained.load("segformer_b0.nvidia_ade20k", log=quiet).variables)
    heads = {("params", "head", "classifier", "kernel"), ("params", "head", "classifier", "bias")}
    assert set(started) == set(expected)
    for path, value in started.items():
        want = fresh[path] if path in heads else expected[path]
        np.testing.assert_array_equal(np.asarray(value), np.asarray(want),
                                      err_msg=weights.show(path))


def test_an_encoder_preset_needs_init_from_part_encoder(publish):
    publish("resnet18.tv_in1k", torch_refs.import_torchvision().models.resnet18().state_dict())
    config = base_config()
    config.model.name = "unet_resnet34"
    config.model.init_from = "preset:resnet18.tv_in1k"
    with pytest.raises(pretrained.PretrainedError, match="holds an encoder only: load it with "
                                                        "init_from_part='encoder'"):
        pretrained.init_from({}, config.model, log=quiet)


class _Stop(Exception):
    pass


def _stop_after(step: int):
    def hook(current: int, state) -> None:
        del state
        if current == step:
            raise _Stop(current)
    return hook


@pytest.mark.slow   # two whole runs with evaluation: ~6 min on a loaded 2-core machine
def test_segformer_finetune_smoke_trains_and_resumes_without_the_network(
        publish, server, cache, camvid_root, tmp_path):
    smp = torch_refs.import_smp()
    torch = torch_refs.import_torch()
    torch.manual_seed(13)
    encoder = refs.randomize_norms(smp.encoders.get_encoder("mit_b0", weights=None)).eval()
    publish("mit_b0.smp_in1k", encoder.state_dict())
    config = camvid_config("segformer_b0_camvid", "finetune,smoke", camvid_root)
    assert (config.model.init_from, config.model.init_from_part) == \
        ("preset:mit_b0.smp_in1k", "encoder")
    workdir = tmp_path / "run"
    with pytest.raises(_Stop):
        loop.train_and_evaluate(config, workdir, hooks=[_stop_after(2)])
    stored = json.loads((workdir / "config.json").read_text())
    assert stored["model"]["init_from"] == "preset:mit_b0.smp_in1k"
    assert stored["data"]["mean"] == [0.485, 0.456, 0.406]
    assert any("mit_b0" in path for _, path in server.requests)
    # The run resumes from its checkpoint: no server, no cache, nothing to download.
    server.stop()
    shutil.rmtree(cache)
    result = loop.train_and_evaluate(config, workdir)
    assert np.isfinite(result["miou"]) and not cache.exists()
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert max(line.get("step", 0) for line in lines) == int(config.train.steps)
