"""Axial-ResNet, Panoptic-DeepLab and Axial-DeepLab: parameter counts, layout, forward passes.

Where each parameter count comes from:
- Axial-ResNet-26-S 5,944,936 (the official PyTorch code's README: 5.9M), and
  Axial-ResNet-50-S/M/L 11,586,216 / 25,179,400 / 43,973,480: the official
  code (csrhddlam/axial-deeplab, lib/models/axialnet.py `axial26s`,
  `axial50s/m/l`, 1000 ImageNet classes), counted with PyTorch from that
  file. The same configuration here: stem "conv7" (7x7 conv of int(64 x s)
  channels + max pooling), no output-stride change, positional tables for a
  224 x 224 input (the official `kernel_size` 56/28/14/7), plus the official
  classifier (2048 s -> 1000 with bias), which segjax's encoder omits.
- Axial-DeepLab-S/M/L 12.1M / 25.9M / 44.9M: the paper's COCO table (Table 2,
  133 classes, 1025 x 1025 crops); Axial-DeepLab-XL 173.0M: its Cityscapes
  table (Table 6, 19 classes, 1025 x 2049). Same configurations here: the
  Inception stem, output stride 16, global attention whose tables cover the
  crop, Panoptic-DeepLab's decoders without ASPP. Ours are 1-2% smaller; the
  paper does not give the size of its positional tables nor its exact
  decoder, and its implementation is not public (docs/panoptic.md).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.axial_deeplab import axial_deeplab
from segjax.models.decoders.panoptic_deeplab import PanopticDeepLabDecoder
from segjax.models.encoders.axial_resnet import AxialBlock, AxialResNet
from segjax.models.segmenter import count_params

OFFICIAL_IMAGENET = {  # (depths, width multiplier): count with the 1000-class classifier
    "axial26s": ((1, 2, 4, 1), 0.5, 5_944_936),
    "axial50s": ((3, 4, 6, 3), 0.5, 11_586_216),
    "axial50m": ((3, 4, 6, 3), 0.75, 25_179_400),
    "axial50l": ((3, 4, 6, 3), 1.0, 43_973_480),
}
# name: (ours, the paper's figure in millions)
PAPER_PANOPTIC = {
    "axial_deeplab_s_panoptic": (11_870_168, 12.1),
    "axial_deeplab_m_panoptic": (25_387_592, 25.9),
    "axial_deeplab_l_panoptic": (44_086_200, 44.9),
    "axial_deeplab_xl_panoptic": (171_517_702, 173.0),
}


def abstract_count(model, shape) -> int:
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return count_params(jax.eval_shape(
        lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x))


@pytest.mark.parametrize("name", sorted(OFFICIAL_IMAGENET))
def test_imagenet_axial_resnets_match_the_official_code(name):
    depths, width, official = OFFICIAL_IMAGENET[name]
    encoder = AxialResNet(depths=depths, width_multiplier=width, stem="conv7")
    classifier = int(2048 * width) * 1000 + 1000
    assert abstract_count(encoder, (1, 224, 224, 3)) + classifier == official


@pytest.mark.parametrize("name", sorted(PAPER_PANOPTIC))
def test_panoptic_counts_at_the_papers_configurations(name):
    ours, paper = PAPER_PANOPTIC[name]
    entry = registry.get("model", name)
    count = abstract_count(entry.factory(**entry.defaults), entry.input_shape)
    assert count == ours
    assert abs(count / 1e6 - paper) / paper < 0.021


def test_registered_configurations():
    s = registry.get("model", "axial_deeplab_s_panoptic")
    xl = registry.get("model", "axial_deeplab_xl_panoptic")
    assert s.input_shape == (1, 1025, 1025, 3) and s.defaults["num_classes"] == 133
    assert xl.input_shape == (1, 1025, 2049, 3) and xl.defaults["num_classes"] == 19
    assert registry.get("model", "axial_deeplab_l").defaults["instance"] is False
    assert set(registry.names("encoder")) >= {f"axial_resnet_{v}" for v in ("s", "m", "l", "xl")}


def test_panoptic_deeplab_resnet50_layout():
    model = registry.build({"name": "panoptic_deeplab_resnet50"})
    x = jax.ShapeDtypeStruct((1, 65, 129, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    params = variables["params"]
    decoder = params["decoder"]
    semantic, instance = decoder["semantic_decoder"], decoder["instance_decoder"]
    assert semantic["low_level0"]["conv"]["kernel"].shape == (1, 1, 512, 64)
    assert semantic["low_level1"]["conv"]["kernel"].shape == (1, 1, 256, 32)
    assert instance["low_level0"]["conv"]["kernel"].shape == (1, 1, 512, 32)
    assert instance["low_level1"]["conv"]["kernel"].shape == (1, 1, 256, 16)
    assert semantic["fuse1"]["depthwise"]["conv"]["kernel"].shape == (5, 5, 1, 288)
    assert instance["fuse1"]["pointwise"]["conv"]["kernel"].shape == (1, 1, 144, 128)
    assert semantic["aspp"]["project"]["conv"]["kernel"].shape == (1, 1, 5 * 256, 256)
    assert decoder["center_head"]["classifier"]["kernel"].shape == (1, 1, 32, 1)
    assert decoder["offset_head"]["classifier"]["kernel"].shape == (1, 1, 32, 2)
    assert params["head"]["classifier"]["kernel"].shape == (1, 1, 256, 19)
    assert count_params(variables) == 54_973_702
    outputs = jax.eval_shape(model.apply, variables, x)
    assert outputs["logits"].shape == (1, 65, 129, 19)
    assert outputs["center"].shape == (1, 65, 129, 1)
    assert outputs["offset"].shape == (1, 65, 129, 2)


def test_axial_deeplab_has_no_aspp_and_a_semantic_only_variant():
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    panoptic = jax.eval_shape(axial_deeplab("s", num_classes=5).init, jax.random.PRNGKey(0), x)
    decoder = panoptic["params"]["decoder"]["semantic_decoder"]
    assert "aspp" not in decoder and decoder["projection"]["conv"]["kernel"].shape == (
        1, 1, 1024, 256)
    semantic_model = axial_deeplab("s", num_classes=5, instance=False)
    semantic = jax.eval_shape(semantic_model.init, jax.random.PRNGKey(0), x)
    assert "instance_decoder" not in semantic["params"]["decoder"]
    outputs = jax.eval_shape(semantic_model.apply, semantic, x)
    assert set(outputs) == {"logits"}


def test_features_strides_and_output_stride():
    x = jax.ShapeDtypeStruct((1, 65, 97, 3), jnp.float32)
    encoder = AxialResNet(depths=(1, 1, 1, 1), width_multiplier=0.25, output_stride=16)
    variables = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), x)
    features = jax.eval_shape(encoder.apply, variables, x)
    sizes = {stride: feature.shape[1:] for stride, feature in features.items()}
    assert sizes == {2: (33, 49, 128), 4: (17, 25, 64), 8: (9, 13, 128), 16: (5, 7, 256),
                     32: (5, 7, 512)}
    attention = variables["params"]["layer3_0"]["height_attention"]
    assert attention["query_rpe"].shape == (2 * 9 - 1, 64 // 8)   # stride 8 input: 9 rows
    fixed = AxialResNet(depths=(1, 1, 1, 1), width_multiplier=0.25, output_stride=16,
                        max_input_size=129)
    fixed_variables = jax.eval_shape(fixed.init, jax.random.PRNGKey(0), x)
    assert fixed_variables["params"]["layer3_0"]["width_attention"]["value_rpe"].shape == (
        2 * 17 - 1, 128 // 8)


def test_block_starts_as_its_shortcut():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 5, 32))
    block = AxialBlock(features=8, num_heads=2)
    variables = jax.jit(block.init)(jax.random.PRNGKey(1), x)
    np.testing.assert_allclose(np.asarray(jax.jit(block.apply)(variables, x)),
                               np.maximum(x, 0), atol=1e-6)
    strided = AxialBlock(features=8, strides=2, num_heads=2)
    shapes = jax.eval_shape(strided.init, jax.random.PRNGKey(1), x)
    assert jax.eval_shape(strided.apply, shapes, x).shape == (2, 3, 3, 32)


def test_offsets_are_scaled_to_input_pixels():
    features = {s: jax.random.normal(jax.random.PRNGKey(s), (1, 64 // s, 64 // s, 16))
                for s in (4, 8, 16)}
    decoder = PanopticDeepLabDecoder(rates=(), aspp_features=8, semantic_features=8,
                                     instance_features=8, semantic_low_level_features=(4, 4),
                                     instance_low_level_features=(4, 4),
                                     instance_head_channels=4)
    variables = jax.jit(decoder.init)(jax.random.PRNGKey(0), features)
    outputs, state = jax.jit(lambda v, f: decoder.apply(
        v, f, capture_intermediates=True, mutable=["intermediates"]))(variables, features)
    head = state["intermediates"]["offset_head"]["__call__"][0]
    np.testing.assert_allclose(np.asarray(outputs["offset"]), 4 * np.asarray(head), rtol=1e-6)
    assert outputs["center"].shape == (1, 16, 16, 1)


@pytest.mark.slow
def test_small_panoptic_model_trains_one_step(random_variables):
    """A compiled forward and backward of a narrow Axial-DeepLab on a 64 x 64 input."""
    model = axial_deeplab("s", num_classes=3, encoder_options={"depths": (1, 1, 1, 1),
                                                               "width_multiplier": 0.125,
                                                               "zero_init_last_bn": False},
                          decoder_options=dict(aspp_features=16, semantic_features=16,
                                               instance_features=8,
                                               semantic_low_level_features=(8, 8),
                                               instance_low_level_features=(4, 4),
                                               instance_head_channels=4))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
    variables = random_variables(model, x)

    def loss(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"])
        return (jnp.mean(jax.nn.log_softmax(outputs["logits"])[..., 0])
                + jnp.mean(outputs["center"] ** 2) + jnp.mean(jnp.abs(outputs["offset"])))

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    assert np.isfinite(float(value))
    attention_grad = grads["encoder"]["layer2_0"]["width_attention"]["query_rpe"]
    assert float(jnp.sum(attention_grad ** 2)) > 0
