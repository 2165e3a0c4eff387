"""Official Axial-DeepLab checkpoints -> segjax's Axial-ResNet, against the official module.

The reference is a verbatim copy of csrhddlam/axial-deeplab's
lib/models/axialnet.py (tests/models/axial_official.py, Apache-2.0), with
every weight and BatchNorm statistic drawn at random, converted tensor by
tensor through the registered 'official_axial_resnet' mapping. Checked:
single blocks at non-square sizes (stride 1 and the stride-2 block, whose
average pooling sits inside the official width attention, before the
block's ReLU), in eval and in train mode (batch statistics), a whole
network saved as the official training script saves it and converted by the
command line, and that the official 26/50-layer state dicts convert completely.
Differences are measured relative to the output's scale (max |reference|).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.convert import convert, get_mapping, mappings_for
from segjax.convert.axial_resnet import prepare_official_axial, qkv_permutation
from segjax.models.encoders.axial_resnet import AxialBlock, AxialResNet

torch = pytest.importorskip("torch")
official = pytest.importorskip("tests.models.axial_official")

TOLERANCE = 1e-4  # of the output scale


def randomize(module, seed: int):
    """Every parameter and BatchNorm statistic of a torch module drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("num_batches_tracked") or name.endswith("flatten_index"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + 1.5 * torch.rand(tensor.shape, generator=generator))
            elif name.endswith("weight") and tensor.ndim == 1:       # BN scale
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.ndim >= 3:                                     # conv: N(0, 1 / fan-in)
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in ** 0.5)
            else:
                tensor.copy_(0.5 * torch.randn(tensor.shape, generator=generator))
    return module


def official_block(inplanes, planes, stride, groups, height, width):
    """The official AxialBlock for an (height, width) input: its attention layers' tables
    (`kernel_size`) sized to each axis, as the official network sizes them per stage."""
    downsample = None
    if stride != 1 or inplanes != planes * official.AxialBlock.expansion:
        downsample = torch.nn.Sequential(
            official.conv1x1(inplanes, planes * official.AxialBlock.expansion, stride),
            torch.nn.BatchNorm2d(planes * official.AxialBlock.expansion))
    block = official.AxialBlock(inplanes, planes, stride, downsample, groups=groups,
                                kernel_size=height)
    block.hight_block = official.AxialAttention(planes, planes, groups=groups,
                                                kernel_size=height)
    block.width_block = official.AxialAttention(planes, planes, groups=groups,
                                                kernel_size=width, stride=stride, width=True)
    return block


def state_of(module, prefix: str = "") -> dict:
    return {prefix + name: value.detach().numpy().copy()
            for name, value in module.state_dict().items()}


def converted(state_dict, flax_module, x, scope_prefix: str | None = None):
    shapes = jax.eval_shape(flax_module.init, jax.random.PRNGKey(0), x)
    if scope_prefix:
        shapes = {c: {scope_prefix: tree} for c, tree in shapes.items()}
    variables, report = convert(state_dict, shapes, get_mapping("official_axial_resnet").factory(),
                                strict=True)
    assert report.complete
    if scope_prefix:
        variables = {c: tree[scope_prefix] for c, tree in variables.items()}
    return variables


def torch_nchw(x: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def relative_difference(ours, reference) -> float:
    reference = np.asarray(reference)
    return float(np.max(np.abs(np.asarray(ours) - reference)) / np.max(np.abs(reference)))


@pytest.mark.parametrize("stride,height,width", [(1, 5, 7), (2, 6, 10)])
@pytest.mark.parametrize("train", [False, True])
def test_block_matches_the_official_block(stride, height, width, train):
    groups, planes, inplanes = 2, 16, 24
    block = randomize(official_block(inplanes, planes, stride, groups, height, width),
                      seed=stride * 10 + height)
    block.train(train)
    x = np.random.default_rng(height).standard_normal((2, height, width, inplanes)).astype(
        np.float32)
    with torch.no_grad():
        expected = block(torch_nchw(x)).numpy().transpose(0, 2, 3, 1)
    ours = AxialBlock(features=planes // 2, strides=stride, num_heads=groups)
    variables = converted(state_of(block, "layer1.0."), ours, x, scope_prefix="layer1_0")
    out = jax.jit(lambda v, x: ours.apply(v, x, train=train, mutable=["batch_stats"])[0])(
        variables, x)
    assert out.shape == expected.shape == (2, -(-height // stride), -(-width // stride),
                                           2 * planes)
    assert relative_difference(out, expected) < TOLERANCE


CONFIG = '''
from segjax.config import base_config


def get_config(arg=""):
    config = base_config()
    config.model.name = "segmenter"
    config.model.num_classes = 2
    config.model.encoder = {"name": "axial_resnet_s", "width_multiplier": 0.125,
                            "depths": (1, 1, 1, 1), "stem": "conv7", "max_input_size": 224}
    config.model.decoder = {"name": "fcn"}
    config.data.crop = (224, 224)
    config.data.image_channels = 3
    return config
'''


def test_official_training_checkpoint_through_the_cli_matches_the_official_network(tmp_path,
                                                                                  capsys):
    """An official AxialAttentionNet (8 stem channels, one block per stage) saved as its
    training script saves it (DataParallel 'module.' names under 'state_dict'), converted by
    `python -m segjax.convert --part encoder`, at 224 x 224."""
    from segjax.convert.__main__ import main
    from segjax.checkpoints import load_variables
    net = randomize(official.AxialAttentionNet(official.AxialBlock, [1, 1, 1, 1], s=0.125),
                    seed=3).eval()
    checkpoint = tmp_path / "axial.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in
                                           net.state_dict().items()}}, str(checkpoint))
    (tmp_path / "axial_config.py").write_text(CONFIG)
    output = tmp_path / "converted"
    assert main(["--checkpoint", str(checkpoint), "--config", str(tmp_path / "axial_config.py"),
                 "--output", str(output), "--part", "encoder"]) == 0
    assert "mapping 'official_axial_resnet'" in capsys.readouterr().out
    variables, _ = load_variables(output)
    x = np.random.default_rng(4).standard_normal((1, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        y = net.maxpool(net.relu(net.bn1(net.conv1(torch_nchw(x)))))
        y = net.layer4(net.layer3(net.layer2(net.layer1(y))))
    expected = y.numpy().transpose(0, 2, 3, 1)
    ours = AxialResNet(depths=(1, 1, 1, 1), width_multiplier=0.125, stem="conv7",
                       max_input_size=224)
    features = jax.jit(lambda v, x: ours.apply(v, x))(
        {c: tree["encoder"] for c, tree in variables.items()}, x)
    assert features[32].shape == expected.shape == (1, 7, 7, 256)
    assert relative_difference(features[32], expected) < TOLERANCE


@pytest.mark.parametrize("name,depths,width", [("axial26s", (1, 2, 4, 1), 0.5),
                                               ("axial50s", (3, 4, 6, 3), 0.5)])
def test_official_state_dicts_convert_completely(name, depths, width):
    state = state_of(getattr(official, name)())
    encoder = AxialResNet(depths=depths, width_multiplier=width, stem="conv7",
                          max_input_size=224)
    shapes = jax.eval_shape(encoder.init, jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    _, report = convert(state, shapes, get_mapping("official_axial_resnet").factory(),
                        strict=True)
    assert "fc.weight" in report.ignored
    assert (report.converted["layer1.0.hight_block.query_rpe"]
            == "params/layer1_0/height_attention/query_rpe")
    assert [m.name for m in mappings_for(encoder="axial_resnet_s")] == ["official_axial_resnet"]


def test_layout_rewrites_by_hand():
    """Two heads of group width 4: channel order, interleaved output BN, reversed tables."""
    assert qkv_permutation(2, 4).tolist() == [0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 6, 7,
                                              12, 13, 14, 15]
    prefix = "layer1.0.width_block"
    relative = np.arange(8 * 5, dtype=np.float32).reshape(8, 5)      # 2g = 8 rows, K = 3
    state = {f"{prefix}.qkv_transform.weight": np.arange(16 * 3, dtype=np.float32).reshape(
        16, 3, 1), f"{prefix}.relative": relative,
        f"{prefix}.flatten_index": np.zeros(9, np.int64)}
    for bn, size in (("bn_qkv", 16), ("bn_similarity", 6), ("bn_output", 16)):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}.{bn}.{leaf}"] = np.arange(size, dtype=np.float32)
    prepared = prepare_official_axial(state)
    assert f"{prefix}.flatten_index" not in prepared and f"{prefix}.relative" not in prepared
    assert prepared[f"{prefix}.qkv_transform.weight"].shape == (16, 3, 1, 1)
    assert prepared[f"{prefix}.qkv_transform.weight"][2, 0, 0, 0] == 8 * 3   # head 1's query
    assert prepared[f"{prefix}.bn_similarity.weight"].tolist() == [[0, 1], [2, 3], [4, 5]]
    output = prepared[f"{prefix}.bn_output.weight"]
    assert output.shape == (2, 2, 4) and output[0, 1, 2] == 2 * (4 + 2)      # content term
    assert output[1, 1, 2] == 2 * (4 + 2) + 1                                # position term
    query, key = prepared[f"{prefix}.query_rpe"], prepared[f"{prefix}.key_rpe"]
    assert query.shape == (5, 2) and key.shape == (5, 2)
    assert query[0].tolist() == relative[:2, 4].tolist()    # offset -2 (key - query) ...
    assert key[0].tolist() == relative[2:4, 0].tolist()     # ... is the official p - o = +2
    assert prepared[f"{prefix}.value_rpe"][4].tolist() == relative[4:, 0].tolist()
