"""Linknet, FPN and PSPNet: the papers' variants beside smp's, and errors that name the field."""

import jax
import jax.numpy as jnp
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params


def init_shapes(model, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    return variables, jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)


def test_pspnet_resnet50_is_the_papers_network():
    """Dilated deep-stem ResNet-50 at output stride 8, PPM with BN in every bin (512 each),
    3x3 fusion, and the auxiliary head on the stride-16 feature as aux_logits."""
    model = registry.build({"name": "pspnet_resnet50", "num_classes": 19})
    variables, outputs = init_shapes(model, (1, 64, 64, 3))
    params = variables["params"]
    assert outputs["logits"].shape == outputs["aux_logits"].shape == (1, 64, 64, 19)
    assert "stem_0" in params["encoder"]                           # v1c deep stem
    assert [params["decoder"][f"bin{k}"]["conv"]["kernel"].shape for k in range(4)] == \
        [(1, 1, 2048, 512)] * 4
    assert all("norm" in params["decoder"][f"bin{k}"] for k in range(4))
    assert params["decoder"]["fuse"]["conv"]["kernel"].shape == (3, 3, 4096, 512)
    assert params["aux_head"]["block"]["conv"]["kernel"].shape == (3, 3, 1024, 256)
    assert params["head"]["classifier"]["kernel"].shape == (1, 1, 512, 19)
    # Output stride 8: the decoder runs at 8x8 on a 64x64 input.
    encoder_variables = {"params": params["encoder"],
                         "batch_stats": variables["batch_stats"]["encoder"]}
    features = jax.eval_shape(model.encoder.apply, encoder_variables,
                              jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    assert features[32].shape == (1, 8, 8, 2048) and features[16].shape == (1, 8, 8, 1024)


def test_pspnet_resnet34_holds_layer3_and_layer4_and_reads_stride_8():
    """smp's layout: the truncated ResNet-34 keeps its unused stages' weights (not run: see
    tests/models/encoders/test_resnet.py), the PPM reads layer2's 128 channels."""
    model = registry.build({"name": "pspnet_resnet34", "num_classes": 4})
    variables, outputs = init_shapes(model, (1, 64, 64, 3))
    assert "layer4_2" in variables["params"]["encoder"]
    assert variables["params"]["decoder"]["fuse"]["conv"]["kernel"].shape == (1, 1, 256, 512)
    assert "norm" not in variables["params"]["decoder"]["bin0"]    # smp: no BN on the 1x1 bin
    assert outputs["logits"].shape == (1, 64, 64, 4)


def test_fpn_resnet50_has_the_papers_output_convs_and_no_dropout():
    paper = registry.build({"name": "fpn_resnet50", "num_classes": 5})
    smp = registry.build_part("decoder", {"name": "fpn"})
    variables, outputs = init_shapes(paper, (1, 64, 64, 3))
    decoder = variables["params"]["decoder"]
    assert [decoder[f"output{k}"]["kernel"].shape for k in range(4)] == [(3, 3, 256, 256)] * 4
    assert paper.decoder.dropout == 0.0 and not paper.align_corners
    assert smp.dropout == 0.2 and not smp.output_convs
    assert count_params(variables) - count_params({"params": {
        k: v for k, v in variables["params"].items() if k != "decoder"}}) > 4 * 9 * 256 * 256
    assert outputs["logits"].shape == (1, 64, 64, 5)


def test_linknet_names_a_size_it_cannot_link():
    model = registry.build({"name": "linknet_resnet34", "num_classes": 2})
    with pytest.raises(ValueError, match="linknet decoder: block .* divisible by 32"):
        init_shapes(model, (1, 72, 64, 3))


def test_fpn_and_pspnet_name_bad_options():
    features = {4: jnp.zeros((1, 8, 8, 8)), 8: jnp.zeros((1, 4, 4, 8))}
    with pytest.raises(ValueError, match=r"fpn decoder: levels=4 needs 4 encoder features"):
        registry.build_part("decoder", {"name": "fpn"}).init(jax.random.PRNGKey(0), features)
    with pytest.raises(ValueError, match=r"fpn decoder: merge must be one of"):
        registry.build_part("decoder", {"name": "fpn", "levels": 2, "merge": "sum"}).init(
            jax.random.PRNGKey(0), features)
    with pytest.raises(KeyError, match=r"pspnet decoder: in_stride 16 is not an encoder stride"):
        registry.build_part("decoder", {"name": "pspnet", "in_stride": 16}).init(
            jax.random.PRNGKey(0), features)
