"""Runtime settings: importing segjax changes nothing process-wide; every entry point applies
config.runtime (conv_impl checked by which convolution formulation gets traced)."""

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from segjax import checkpoints, evaluate, export, predict, runtime
from segjax.config import base_config
from segjax.models import registry
from segjax.ops import conv_cpu
from tests.train.conftest import tiny_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_importing_segjax_changes_no_process_wide_jax_state():
    code = """
import jax, jax.monitoring
registered = []
for name in [n for n in dir(jax.monitoring) if n.startswith("register_")]:
    setattr(jax.monitoring, name, lambda *args, _name=name, **kwargs: registered.append(_name))
import segjax, segjax.models, segjax.evaluation, segjax.inference, segjax.data, segjax.losses
import segjax.train.loop, segjax.predict, segjax.evaluate, segjax.export, segjax.convert
from segjax.models import registry
registry.names("model")
assert jax.config.jax_default_prng_impl == "threefry2x32", jax.config.jax_default_prng_impl
assert not registered, registered
print("clean")
"""
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0 and "clean" in result.stdout, result.stderr[-3000:]


def test_configure_applies_and_validates_settings():
    config = base_config()
    config.runtime.conv_impl = "native"
    assert runtime.configure(config).conv_impl == "native"
    from segjax.ops import conv
    assert conv.implementation() == "native"
    assert runtime.configure(config, conv_impl="cpu").conv_impl == "cpu"
    legacy = {"model": {"conv_impl": "native"}}  # a config.json written before config.runtime
    assert runtime.settings_from_config(legacy).conv_impl == "native"
    config.runtime.prng_impl = "mersenne"
    with pytest.raises(ValueError, match="config.runtime.prng_impl='mersenne'"):
        runtime.configure(config)
    runtime.configure()
    assert str(runtime.key(3).dtype) == "key<rbg>"


@pytest.fixture
def cpu_conv_calls(monkeypatch):
    """How often segjax's CPU convolution formulation is traced (0: XLA's native conv)."""
    calls = []
    original = conv_cpu.conv

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_cpu, "conv", spy)
    yield calls
    runtime.configure()


@pytest.fixture
def run_dir(tmp_path, random_variables):
    """A same-padded width-4 U-Net run on ISBI-like 1-channel images, runtime.conv_impl='cpu'."""
    config = base_config()
    config.model.name = "unet"
    config.model.padding, config.model.width, config.model.depth = "same", 4, 1
    config.model.num_classes = 2
    config.data.image_channels = 1
    config.runtime.conv_impl = "cpu"
    (tmp_path / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    model = registry.build(config.model)
    variables = random_variables(model, jnp.zeros((1, 16, 16, 1)))
    checkpoints.save_variables(tmp_path / checkpoints.BEST_DIR / checkpoints.BEST_FILE, variables,
                               {"model": config.model.to_dict()})
    from PIL import Image
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray((np.arange(256).reshape(16, 16) % 251).astype(np.uint8)).save(
        images / "a.png")
    return tmp_path


NATIVE = ["--config.runtime.conv_impl=native"]


@pytest.mark.parametrize("flag,expect_cpu", [([], True), (NATIVE, False)])
def test_predict_honours_conv_impl(run_dir, tmp_path, cpu_conv_calls, flag, expect_cpu):
    assert predict.main(["--workdir", str(run_dir), "--input", str(run_dir / "images"),
                         "--output", str(tmp_path / "out"), "--no_progress", *flag]) == 0
    assert bool(cpu_conv_calls) == expect_cpu


@pytest.mark.parametrize("flag,expect_cpu", [([], True), (NATIVE, False)])
def test_export_honours_conv_impl(run_dir, tmp_path, cpu_conv_calls, flag, expect_cpu):
    assert export.main(["--workdir", str(run_dir), "--output", str(tmp_path / "m.jaxexport"),
                        "--input_shape", "16,16,1", *flag]) == 0
    assert bool(cpu_conv_calls) == expect_cpu


@pytest.mark.parametrize("flag,expect_cpu", [([], True), (NATIVE, False)])
def test_evaluate_honours_conv_impl(isbi_root, tmp_path, cpu_conv_calls, random_variables,
                                    flag, expect_cpu):
    config = base_config()
    config.model.name = "unet"
    config.model.padding, config.model.width, config.model.depth = "same", 4, 1
    from segjax.data import datasets
    datasets.apply("isbi2012_em", config.data)
    config.data.root = str(isbi_root)
    config.runtime.conv_impl = "cpu"
    (tmp_path / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    model = registry.build(config.model)
    checkpoints.save_variables(tmp_path / checkpoints.BEST_DIR / checkpoints.BEST_FILE,
                               random_variables(model, jnp.zeros((1, 16, 16, 1))),
                               {"model": config.model.to_dict()})
    cpu_conv_calls.clear()  # count the entry point's tracing only
    assert evaluate.main(["--workdir", str(tmp_path), "--split", "train[25:26]", "--output",
                          str(tmp_path / "eval"), "--no_progress", *flag]) == 0
    assert bool(cpu_conv_calls) == expect_cpu
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["num_images"] == 1


@pytest.mark.parametrize("impl,expect_cpu", [("cpu", True), ("native", False)])
def test_training_honours_conv_impl(tmp_path, cpu_conv_calls, impl, expect_cpu):
    from segjax.train import loop
    config = tiny_config(runtime__conv_impl=impl, train__steps=2, train__eval_every=2)
    loop.train_and_evaluate(config, tmp_path)
    assert bool(cpu_conv_calls) == expect_cpu


@pytest.mark.parametrize("flag,expect_cpu", [([], True), (NATIVE, False)])
def test_convert_honours_conv_impl(tmp_path, cpu_conv_calls, flag, expect_cpu):
    from segjax.convert.__main__ import main as convert_main
    from tests import torch_refs
    torch = torch_refs.import_torch()
    from safetensors.torch import save_file
    torchvision = torch_refs.import_torchvision()
    state = torchvision.models.resnet18().state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    (tmp_path / "config.py").write_text(
        "from segjax.config import base_config\n\n\ndef get_config(arg=''):\n"
        "    config = base_config()\n    config.model.name = 'segmenter'\n"
        "    config.model.encoder = {'name': 'resnet18'}\n"
        "    config.model.decoder = {'name': 'deeplabv3'}\n"
        "    config.data.crop = (32, 32)\n    config.runtime.conv_impl = 'cpu'\n"
        "    return config\n")
    del torch
    assert convert_main(["--checkpoint", str(tmp_path / "r18.safetensors"), "--config",
                         str(tmp_path / "config.py"), "--output", str(tmp_path / "out"),
                         "--part", "encoder", *flag]) == 0
    assert bool(cpu_conv_calls) == expect_cpu


def test_benchmark_sets_its_formulation_through_runtime(monkeypatch):
    sys.path.insert(0, str(REPO_ROOT))
    from experiments import bench_conv

    class Stop(Exception):
        pass

    seen = []

    def configure(config=None, **overrides):
        seen.append(overrides)
        raise Stop

    monkeypatch.setattr(runtime, "configure", configure)
    with pytest.raises(Stop):
        bench_conv.prepare_jax("unet", "train", "native", "float32")
    assert seen == [{"conv_impl": "native"}]
