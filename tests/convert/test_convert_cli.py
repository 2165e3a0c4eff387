"""`python -m segjax.convert`: a ResNet-18 safetensors checkpoint -> variables file
-> load -> the torchvision model's features; CLI errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from segjax import cli
from segjax.convert.__main__ import main
from segjax.models.encoders.resnet import ResNet
from segjax.checkpoints import load_variables
from tests import torch_refs
from tests.models.encoders.encoder_parity import torchvision_resnet_features

CONFIG = '''
from segjax.config import base_config


def get_config(arg=""):
    config = base_config()
    config.model.name = "segmenter"
    config.model.num_classes = 11
    config.model.encoder = {"name": "resnet18", "output_stride": 16 if arg == "os16" else 32}
    config.model.decoder = {"name": "deeplabv3"}
    config.data.crop = (64, 64)
    config.data.image_channels = 3
    return config
'''


@pytest.fixture()
def resnet18_checkpoint(tmp_path):
    torchvision = torch_refs.import_torchvision()
    torch = torch_refs.import_torch()
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = torch_refs.randomize_bn(torchvision.models.resnet18()).eval()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    config = tmp_path / "resnet18_config.py"
    config.write_text(CONFIG)
    return model, path, config


def test_safetensors_round_trip_gives_torchvision_features(resnet18_checkpoint, tmp_path,
                                                           capsys):
    model, checkpoint, config = resnet18_checkpoint
    output = tmp_path / "converted"
    assert main(["--checkpoint", str(checkpoint), "--config", f"{config}:os16",
                 "--output", str(output), "--part", "encoder"]) == 0
    assert "mapping 'torchvision_resnet'" in capsys.readouterr().out
    variables, metadata = load_variables(output)
    assert metadata["source"]["mapping"] == "torchvision_resnet"
    assert metadata["model"]["encoder"]["name"] == "resnet18"
    encoder_variables = {c: tree["encoder"] for c, tree in variables.items()}
    x = np.random.RandomState(0).randn(1, 64, 64, 3).astype(np.float32)
    actual = jax.jit(lambda v, x: ResNet(depth=18).apply(v, x))(encoder_variables, x)
    expected = torchvision_resnet_features(model, x)
    for stride in expected:
        assert torch_refs.max_rel_diff(actual[stride], expected[stride]) < 1e-4, stride


def test_cli_errors_name_the_problem(resnet18_checkpoint, tmp_path, capsys):
    _, checkpoint, config = resnet18_checkpoint
    common = ["--config", str(config), "--output", str(tmp_path / "out"), "--part", "encoder"]
    assert cli.invoke(main, ["--checkpoint", str(tmp_path / "missing.pth"), *common]) == 1
    assert "--checkpoint: no file at" in capsys.readouterr().err
    assert cli.invoke(main, ["--checkpoint", str(checkpoint), "--mapping", "nope",
                             *common]) == 1
    assert "unknown conversion mapping 'nope'" in capsys.readouterr().err
    # The deep-stem mapping has no rule for torchvision's 7x7 stem conv and sends bn1 to a
    # stem the config's resnet18 does not have: refused, every tensor and variable named.
    assert cli.invoke(main, ["--checkpoint", str(checkpoint), "--mapping",
                             "resnet_deep_stem", *common]) == 1
    err = capsys.readouterr().err
    assert "conv1.weight: no rule for torch module 'conv1'" in err
    assert "bn1.running_var: no flax variable at batch_stats/encoder/stem_2/norm/bn/var" in err
    assert "params/encoder/conv1/kernel" in err
    assert not (tmp_path / "out").exists()
    text = tmp_path / "notes.pth"
    text.write_text("a text file with a checkpoint's name\n")
    assert cli.invoke(main, ["--checkpoint", str(text), *common]) == 1
    err = capsys.readouterr().err
    assert f"--checkpoint: {text} is not a PyTorch checkpoint that torch.load reads" in err
    assert "weights_only" not in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_output_that_is_not_a_conversion_is_kept_without_overwrite(resnet18_checkpoint,
                                                                   tmp_path, capsys):
    _, checkpoint, config = resnet18_checkpoint
    output = tmp_path / "results"
    output.mkdir()
    (output / "notes.txt").write_text("a week of work")
    command = ["--checkpoint", str(checkpoint), "--config", str(config), "--output", str(output),
               "--part", "encoder"]
    assert cli.invoke(main, command) == 2
    assert "is a non-empty directory that is not a segjax variables checkpoint; refusing " \
           "to replace it" in capsys.readouterr().err
    assert (output / "notes.txt").read_text() == "a week of work"
    assert main(command + ["--overwrite"]) == 0
    assert not (output / "notes.txt").exists()
    assert main(command) == 0  # a previous conversion's output is replaced
    assert load_variables(output)[1]["source"]["mapping"] == "torchvision_resnet"
