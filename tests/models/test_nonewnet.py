"""No New-Net (Isensee et al. 2018): the paper's layout, its parameter count derived by hand,
2D and 3D instances of the one U-Net class, deep supervision, instance normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import losses
from segjax.config import base_config
from segjax.models import build
from segjax.models.segmenter import count_params
from segjax.models.unet import UNet

WIDTHS = (30, 60, 120, 240, 480)


def conv_layers(in_channels: int, widths=WIDTHS) -> list[tuple[int, int]]:
    """(C_in, C_out) of every 3x3(x3) convolution of the paper's Fig. 1, top to bottom and back.

    Encoder level l: C_in -> w_l -> w_l. Bottom: w_3 -> w_4 -> w_3 (reduced before the
    upsampling). Decoder level l (after concatenating the skip, 2 w_l channels):
    2 w_l -> w_l -> w_{l-1} (reduced again before the next upsampling), the top one -> w_0.
    """
    depth = len(widths) - 1
    layers, channels = [], in_channels
    for level in range(depth):
        layers += [(channels, widths[level]), (widths[level], widths[level])]
        channels = widths[level]
    layers += [(channels, widths[depth]), (widths[depth], widths[depth - 1])]
    for level in reversed(range(depth)):
        layers += [(2 * widths[level], widths[level]),
                   (widths[level], widths[max(level - 1, 0)])]
    return layers


def paper_param_count(in_channels=4, num_classes=4, taps=27, widths=WIDTHS) -> int:
    """taps * C_in * C_out per conv (no bias: instance norm follows), 2 * C_out per instance
    norm (scale and shift), and the 1x1 classifier with its bias."""
    layers = conv_layers(in_channels, widths)
    convs = sum(taps * c_in * c_out for c_in, c_out in layers)
    norms = sum(2 * c_out for _, c_out in layers)
    return convs + norms + widths[0] * num_classes + num_classes


def init_shapes(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda v: model.init_with_output(jax.random.PRNGKey(0), v), x)


def test_paper_configuration_has_14_490_784_parameters():
    # 18 convolutions; 4 modalities in, 4 classes out, 128^3 patches.
    assert len(conv_layers(4)) == 18
    assert paper_param_count() == 14_490_784
    outputs, variables = init_shapes(build({"name": "nonewnet"}), (1, 128, 128, 128, 4))
    assert count_params(variables) == 14_490_784
    assert outputs["logits"].shape == (1, 128, 128, 128, 4)
    assert set(outputs) == {"logits"}


def test_feature_maps_are_reduced_before_each_upsampling_and_upsampling_has_no_weights():
    _, variables = init_shapes(build({"name": "nonewnet"}), (1, 32, 32, 32, 4))
    params = variables["params"]
    out_width = lambda block, conv: params[block][conv]["conv"]["kernel"].shape[-1]  # noqa: E731
    assert out_width("bottom", "conv1") == 480 and out_width("bottom", "conv2") == 240
    assert [out_width(f"up{level}_conv", "conv2") for level in (3, 2, 1, 0)] == [120, 60, 30, 30]
    assert params["up3_conv"]["conv1"]["conv"]["kernel"].shape[-2] == 480  # 240 skip + 240 up
    assert not any(name in params for name in ("up0", "up1", "up2", "up3"))
    assert "in" in params["down0"]["conv1"]["norm"]          # instance norm
    assert "bias" not in params["down0"]["conv1"]["conv"]


def test_one_class_builds_a_2d_and_a_3d_network():
    model = build({"name": "nonewnet", "num_classes": 3})
    assert type(model) is UNet
    out2d, vars2d = init_shapes(model, (2, 32, 48, 1))
    out3d, vars3d = init_shapes(model, (1, 16, 32, 16, 1))
    assert out2d["logits"].shape == (2, 32, 48, 3)
    assert out3d["logits"].shape == (1, 16, 32, 16, 3)
    assert vars2d["params"]["down0"]["conv1"]["conv"]["kernel"].shape == (3, 3, 1, 30)
    assert vars3d["params"]["down0"]["conv1"]["conv"]["kernel"].shape == (3, 3, 3, 1, 30)
    assert count_params(vars2d) == paper_param_count(1, 3, taps=9)
    assert count_params(vars3d) == paper_param_count(1, 3, taps=27)


def test_deep_supervision_heads_and_their_loss():
    options = {"name": "nonewnet", "num_classes": 3, "width": 2, "depth": 3}
    model = build({**options, "deep_supervision": 2})
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 8, 2))
    outputs, variables = jax.jit(model.init_with_output)(jax.random.PRNGKey(1), x)
    assert [a.shape for a in outputs["aux_logits"]] == [(1, 8, 8, 8, 3)] * 2
    _, plain_variables = init_shapes(build(options), x.shape)
    # Heads on decoder levels 1 and 2, which output w_0 = 2 and w_1 = 4 channels.
    assert count_params(variables) - count_params(plain_variables) == (2 * 3 + 3) + (4 * 3 + 3)
    labels = jax.random.randint(jax.random.PRNGKey(2), (1, 8, 8, 8), 0, 3)
    config = base_config().loss
    loss, parts = losses.segmentation_loss(outputs, {"label": labels}, config, num_classes=3,
                                           ignore_index=255)
    assert set(parts) == {"cross_entropy", "aux", "loss"}
    assert float(loss) == pytest.approx(float(parts["cross_entropy"])
                                        + config.aux_weight * float(parts["aux"]), rel=1e-6)


def test_instance_norm_makes_the_output_invariant_to_the_input_scale():
    # Batch norm in inference mode would pass a scaled input on; instance norm divides it out.
    model = build({"name": "nonewnet", "num_classes": 2, "width": 4, "depth": 2})
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 8, 1))
    variables = model.init(jax.random.PRNGKey(1), x)
    logits = model.apply(variables, x)["logits"]
    scaled = model.apply(variables, 5.0 * x)["logits"]
    np.testing.assert_allclose(np.asarray(scaled), np.asarray(logits), atol=2e-4)


def test_leaky_relu_passes_negative_values():
    model = build({"name": "nonewnet", "num_classes": 2, "width": 4, "depth": 1})
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 8, 1))
    variables = model.init(jax.random.PRNGKey(1), x)
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    block = state["intermediates"]["down0"]["conv1"]["__call__"][0]
    assert float(jnp.min(block)) < 0      # slope 1e-2 below zero, not a ReLU
    normalized = state["intermediates"]["down0"]["conv1"]["norm"]["__call__"][0]
    np.testing.assert_allclose(np.asarray(block), np.asarray(jax.nn.leaky_relu(normalized, 0.01)),
                               atol=1e-6)


def test_errors_name_the_option():
    x = jnp.ones((1, 24, 24, 24, 1))
    with pytest.raises(ValueError, match="divisible by 16"):
        build({"name": "nonewnet"}).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="deep_supervision=4 must be in"):
        build({"name": "nonewnet", "deep_supervision": 4}).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="needs padding='same'"):
        build({"name": "unet", "deep_supervision": 1}).init(jax.random.PRNGKey(0),
                                                           jnp.ones((1, 188, 188, 1)))
    with pytest.raises(ValueError, match="upsample must be one of"):
        build({"name": "nonewnet", "upsample": "nearest"}).init(jax.random.PRNGKey(0),
                                                               jnp.ones((1, 16, 16, 16, 1)))


def _from_torch(module, depth: int) -> dict:
    """The Flax params of `nonewnet` from the benchmark's PyTorch No New-Net."""
    def conv_norm(sequential):
        conv, norm = sequential[0], sequential[1]
        kernel = conv.weight.detach().numpy().transpose(2, 3, 4, 1, 0)   # OIDHW -> DHWIO
        return {"conv": {"kernel": kernel},
                "norm": {"in": {"scale": norm.weight.detach().numpy(),
                                "bias": norm.bias.detach().numpy()}}}

    def block(sequential):
        return {"conv1": conv_norm(sequential[0]), "conv2": conv_norm(sequential[1])}

    params = {f"down{level}": block(module.down[level]) for level in range(depth)}
    params["bottom"] = block(module.bottom)
    for index, level in enumerate(reversed(range(depth))):
        params[f"up{level}_conv"] = block(module.up[index])
    params["classifier"] = {
        "kernel": module.classifier.weight.detach().numpy().transpose(2, 3, 4, 1, 0),
        "bias": module.classifier.bias.detach().numpy()}
    return params


def test_the_benchmarks_pytorch_no_new_net_is_the_same_network():
    import torch

    from experiments.bench_nonewnet import torch_nonewnet

    torch.manual_seed(0)
    reference = torch_nonewnet(in_channels=2, num_classes=3, width=4, depth=2).eval()
    for module in reference.modules():   # non-trivial affine instance-norm parameters
        if isinstance(module, torch.nn.InstanceNorm3d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 16, 2)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 4, 1, 2, 3))).numpy()
    model = build({"name": "nonewnet", "num_classes": 3, "width": 4, "depth": 2})
    params = _from_torch(reference, depth=2)
    ours = model.apply({"params": params}, jnp.asarray(x))["logits"]
    assert count_params({"params": params}) == sum(p.numel() for p in reference.parameters())
    np.testing.assert_allclose(np.asarray(ours), expected.transpose(0, 2, 3, 4, 1), atol=1e-4)
