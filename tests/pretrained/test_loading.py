"""download -> verify -> convert -> load, per preset family, against the reference framework.

Each test writes a checkpoint with random weights in the family's real layout (the
reference module's own state dict: torchvision, transformers, smp, timm), serves it from
the loopback server as the preset's file (Hub or URL), loads the preset by name and
compares the outputs with the reference's on the same input (max |diff| / max |reference|
< 1e-4). Big families use small widths through the preset's model config (real tensor
names); the full-size tables are checked in test_presets.py. Class-count changes and
input-channel adaptation are checked on the same loads.
"""

from __future__ import annotations

import functools
import re

import jax
import numpy as np
import pytest

from segjax import pretrained
from segjax.pretrained import weights
from tests import torch_refs
from tests.models import transformer_refs as refs

TOLERANCE = 1e-4


def quiet(message: str) -> None:
    del message


def random_image(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def apply(loaded, x):
    """The model's outputs (compiled: op-by-op convolutions are far slower on CPU)."""
    run = jax.jit(functools.partial(loaded.model.apply, train=False))
    return run(loaded.variables, x)


def torch_features(module, x) -> np.ndarray:
    return torch_refs.to_nhwc(torch_refs.run_nhwc(module, x))


# ----------------------------------------------------------------------------- families


def test_torchvision_resnet_url_preset_matches_torchvision(publish):
    torchvision = torch_refs.import_torchvision()
    torch = torch_refs.import_torch()
    reference = torch_refs.randomize_bn(torchvision.models.resnet18()).eval()
    publish("resnet18.tv_in1k", reference.state_dict())
    loaded = pretrained.load("resnet18.tv_in1k", log=quiet)
    x = random_image((2, 64, 96, 3))
    body = torch.nn.Sequential(*list(reference.children())[:-2])
    assert torch_refs.max_rel_diff(apply(loaded, x)[32], torch_features(body, x)) < TOLERANCE
    assert loaded.normalization == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                    "value_range": [0.0, 1.0], "channel_order": "RGB"}


def test_torchvision_segmentation_preset_through_a_redirect_matches_torchvision(publish):
    torchvision = torch_refs.import_torchvision()
    reference = torch_refs.randomize_bn(
        torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=True)).eval()
    publish("tv_deeplabv3_mobilenet_v3_large.tv_coco_voc", reference.state_dict(),
            redirect=True)
    loaded = pretrained.load("tv_deeplabv3_mobilenet_v3_large.tv_coco_voc", log=quiet)
    x = random_image((2, 64, 64, 3))
    outputs = torch_refs.run_nhwc(reference, x)
    ours = apply(loaded, x)
    assert torch_refs.max_rel_diff(ours["logits"], torch_refs.to_nhwc(outputs["out"])) \
        < TOLERANCE
    assert torch_refs.max_rel_diff(ours["aux_logits"], torch_refs.to_nhwc(outputs["aux"])) \
        < TOLERANCE
    assert loaded.config.data.class_names[15] == "person"


def test_segformer_hub_preset_matches_transformers_and_predicts_normalised_images(publish):
    reference = refs.hf_segformer("b0", 150, seed=3)
    publish("segformer_b0.nvidia_ade20k", reference.state_dict())
    loaded = pretrained.load("segformer_b0.nvidia_ade20k", log=quiet)
    model, variables = loaded
    assert (model, variables) == (loaded.model, loaded.variables)
    x = random_image((2, 64, 96, 3))
    ours = apply(loaded, x)["logits"]
    assert torch_refs.max_rel_diff(ours, refs.reference_logits(reference, x)) < TOLERANCE
    # predict() normalises a uint8 image with the preset's ImageNet statistics.
    image = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    normalised = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225])
    expected = np.argmax(refs.reference_logits(reference, normalised[None].astype(np.float32)),
                         axis=-1)[0]
    assert np.mean(loaded.predict(image) == expected) > 0.999
    assert loaded.config.data.class_names[0] == "wall" and loaded.config.model.num_classes == 150


def test_mit_encoder_hub_safetensors_preset_matches_smp(publish):
    smp = torch_refs.import_smp()
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = refs.randomize_norms(smp.encoders.get_encoder("mit_b0", weights=None)).eval()
    publish("mit_b0.smp_in1k", reference.state_dict())
    loaded = pretrained.load("mit_b0.smp_in1k", log=quiet)
    x = random_image((1, 64, 64, 3))
    features = torch_refs.run_nhwc(reference, x)
    ours = apply(loaded, x)
    for stride, theirs in zip((4, 8, 16, 32), features[2:]):
        assert torch_refs.max_rel_diff(ours[stride], torch_refs.to_nhwc(theirs)) < TOLERANCE


TINY_DPT_HF = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
               "intermediate_size": 128, "backbone_out_indices": [0, 1, 2, 3],
               "neck_hidden_sizes": [8, 16, 32, 64], "fusion_hidden_size": 32, "image_size": 64}
TINY_DPT_ENCODER = {"name": "dpt_vit_b16", "hidden_size": 64, "depth": 4, "num_heads": 4,
                    "mlp_dim": 128, "out_layers": (0, 1, 2, 3),
                    "reassemble_features": (8, 16, 32, 64), "image_size": 64,
                    "layer_norm_epsilon": 1e-12}


def test_dpt_hub_preset_matches_transformers_at_small_width(publish):
    reference = refs.hf_dpt("b16", 150, seed=2, **TINY_DPT_HF)
    head = {"name": "fcn", "channels": 32, "dropout": 0.1}
    tiny = {"name": "segmenter", "num_classes": 150, "encoder": TINY_DPT_ENCODER,
            "decoder": {"name": "dpt", "features": 32}, "head": head, "aux_head": head,
            "aux_stride": "decoder", "align_corners": True}
    publish("dpt_vit_l16.intel_ade20k", reference.state_dict(), model=tiny)
    loaded = pretrained.load("dpt_vit_l16.intel_ade20k", log=quiet)
    x = random_image((2, 64, 64, 3))
    assert torch_refs.max_rel_diff(apply(loaded, x)["logits"], refs.hf_dpt_logits(reference, x)) \
        < TOLERANCE


def vit_taps(loaded, x):
    """(tokens after each of out_layers, final normalised tokens) of the encoder's ViT."""
    run = jax.jit(functools.partial(
        loaded.model.apply, train=False, mutable=["intermediates"],
        capture_intermediates=lambda module, _: module.name == "vit"))
    _, state = run(loaded.variables, x)
    return state["intermediates"]["vit"]["__call__"][0]


# transformers 5 renames the published ViT files' names on loading (its conversion_mapping for
# ViTModel); this is the reverse, giving the layout of google/vit-*-patch16-384's files.
PUBLISHED_VIT_NAMES = ((r"\.layers\.(\d+)\.", r".encoder.layer.\1."),
                       (r"attention\.([qkv])_proj",
                        lambda m: "attention.attention." + {"q": "query", "k": "key",
                                                            "v": "value"}[m.group(1)]),
                       (r"attention\.o_proj", "attention.output.dense"),
                       (r"mlp\.fc1", "intermediate.dense"), (r"mlp\.fc2", "output.dense"))


def published_vit_layout(state_dict) -> dict:
    renamed = {}
    for name, tensor in state_dict.items():
        for pattern, replacement in PUBLISHED_VIT_NAMES:
            name = re.sub(pattern, replacement, name)
        renamed[name] = tensor
    return renamed


@pytest.mark.parametrize("layout", ["transformers", "published"])
def test_vit_encoder_hub_preset_matches_transformers_vit(publish, layout):
    transformers = torch_refs.import_transformers()
    torch = torch_refs.import_torch()
    torch.manual_seed(4)
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                    intermediate_size=128, image_size=64, patch_size=16,
                                    num_labels=10)
    reference = refs.randomize_norms(transformers.ViTForImageClassification(config), 4).eval()
    state_dict = reference.state_dict()
    if layout == "published":
        state_dict = published_vit_layout(state_dict)
        assert "vit.encoder.layer.3.attention.attention.query.weight" in state_dict
        assert "vit.encoder.layer.3.output.dense.bias" in state_dict
        assert "vit.encoder.layer.3.attention.output.dense.bias" in state_dict
    publish("dpt_vit_b16.google_in21k_ft_in1k", state_dict, model=TINY_DPT_ENCODER)
    loaded = pretrained.load("dpt_vit_b16.google_in21k_ft_in1k", log=quiet)
    x = random_image((2, 64, 64, 3))
    taps, final = vit_taps(loaded, x)
    with torch.no_grad():
        out = reference.vit(torch_refs.to_nchw(x), output_hidden_states=True)
    for index, tap in enumerate(taps):
        assert torch_refs.max_rel_diff(tap, out.hidden_states[index + 1].numpy()) < TOLERANCE
    assert torch_refs.max_rel_diff(final, out.last_hidden_state.numpy()) < TOLERANCE


def test_timm_hybrid_vit_url_preset_matches_timm(publish):
    timm = torch_refs.import_timm()
    torch = torch_refs.import_torch()
    torch.manual_seed(5)
    reference = timm.create_model("vit_base_r50_s16_384", pretrained=False, img_size=64,
                                  embed_dim=64, depth=4, num_heads=4, num_classes=10)
    reference = refs.randomize_norms(reference, 5).eval()
    with torch.no_grad():
        reference.cls_token.normal_(0, 0.5)
    tiny = {"name": "dpt_vit_hybrid", "hidden_size": 64, "depth": 4, "num_heads": 4,
            "mlp_dim": 256, "out_layers": (2, 3), "reassemble_features": (64, 64),
            "image_size": 64}
    publish("dpt_vit_hybrid.timm_in21k_ft_in1k", reference.state_dict(), model=tiny)
    loaded = pretrained.load("dpt_vit_hybrid.timm_in21k_ft_in1k", log=quiet)
    x = random_image((1, 64, 64, 3))
    with torch.no_grad():
        pixels = torch_refs.to_nchw(x)
        backbone = reference.patch_embed.backbone
        stride4 = backbone.stages[0](backbone.stem(pixels))
        stride8 = backbone.stages[1](stride4)
        tokens = reference._pos_embed(reference.patch_embed(pixels))
        blocks = []
        for block in reference.blocks:
            tokens = block(tokens)
            blocks.append(tokens.numpy())
        final = reference.norm(tokens).numpy()
    features = apply(loaded, x)
    assert torch_refs.max_rel_diff(features[4], torch_refs.to_nhwc(stride4)) < TOLERANCE
    assert torch_refs.max_rel_diff(features[8], torch_refs.to_nhwc(stride8)) < TOLERANCE
    taps, ours_final = vit_taps(loaded, x)
    for tap, theirs in zip(taps, (blocks[2], blocks[3])):
        assert torch_refs.max_rel_diff(tap, theirs) < TOLERANCE
    assert torch_refs.max_rel_diff(ours_final, final) < TOLERANCE


def mmseg_v1c_state_dict(reference) -> dict:
    """A timm deep-stem ResNet's state dict in mmsegmentation's ResNetV1c names (the layout of
    OpenMMLab's resnet*_v1c files): conv1.{0,1,3,4,6} -> stem.{0,1,3,4,6}, bn1 -> stem.7."""
    renamed = {}
    for name, tensor in reference.state_dict().items():
        if name.startswith("conv1."):
            name = "stem." + name[len("conv1."):]
        elif name.startswith("bn1."):
            name = "stem.7." + name[len("bn1."):]
        renamed[name] = tensor
    return renamed


def timm_v1c(depth: int):
    timm = torch_refs.import_timm()
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet
    block, layers = {18: (BasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3]),
                     101: (Bottleneck, [3, 4, 23, 3])}[depth]
    del timm
    return ResNet(block, layers, stem_width=32, stem_type="deep")


def test_openmmlab_v1c_url_preset_matches_the_deep_stem_resnet(publish):
    torch = torch_refs.import_torch()
    torch.manual_seed(6)
    reference = torch_refs.randomize_bn(timm_v1c(18)).eval()
    publish("resnet18_v1c.mmseg_in1k", mmseg_v1c_state_dict(reference))
    loaded = pretrained.load("resnet18_v1c.mmseg_in1k", log=quiet)
    x = random_image((1, 64, 64, 3))
    with torch.no_grad():
        theirs = torch_refs.to_nhwc(reference.forward_features(torch_refs.to_nchw(x)))
    assert torch_refs.max_rel_diff(apply(loaded, x)[32], theirs) < TOLERANCE
    # OpenMMLab states ImageNet's statistics on the 0-255 scale; config.data gets them on 0-1.
    np.testing.assert_allclose(loaded.config.data.mean, (0.485, 0.456, 0.406), atol=1e-6)
    np.testing.assert_allclose(loaded.config.data.std, (0.229, 0.224, 0.225), atol=1e-6)


@pytest.mark.slow
def test_xception65_url_preset_matches_timm(publish):
    timm = torch_refs.import_timm()
    torch = torch_refs.import_torch()
    torch.manual_seed(7)
    reference = torch_refs.randomize_bn(timm.create_model("xception65", pretrained=False)).eval()
    publish("xception65.tf_in1k", reference.state_dict())
    loaded = pretrained.load("xception65.tf_in1k", log=quiet)
    x = random_image((1, 96, 96, 3))
    with torch.no_grad():
        theirs = torch_refs.to_nhwc(reference.forward_features(torch_refs.to_nchw(x)))
    assert torch_refs.max_rel_diff(apply(loaded, x)[32], theirs) < TOLERANCE


# ----------------------------------------------------------------------------- class counts


@functools.cache
def mobilenet_deeplab_state_dict():
    torchvision = torch_refs.import_torchvision()
    model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    return torch_refs.randomize_bn(model).eval().state_dict()


def test_class_count_change_reinitialises_exactly_the_heads(publish):
    publish("tv_deeplabv3_mobilenet_v3_large.tv_coco_voc", mobilenet_deeplab_state_dict())
    lines = []
    full = pretrained.load("tv_deeplabv3_mobilenet_v3_large.tv_coco_voc", log=lines.append)
    assert len(lines) == 1 and ": downloading http://127.0.0.1:" in lines[0]   # nothing else
    lines.clear()
    changed = pretrained.load("tv_deeplabv3_mobilenet_v3_large.tv_coco_voc", num_classes=5,
                              log=lines.append)
    heads = {"params/head/classifier/kernel", "params/head/classifier/bias",
             "params/aux_head/classifier/kernel", "params/aux_head/classifier/bias"}
    assert len(lines) == 1 and "(5 classes; the checkpoint has 21)" in lines[0]
    assert set(lines[0].split(": ", 2)[2].split(", ")) == heads
    before, after = weights.flat(full.variables), weights.flat(changed.variables)
    assert set(before) == set(after)
    for path, value in after.items():
        if weights.show(path) in heads:
            assert value.shape[-1] == 5 and before[path].shape[-1] == 21
        else:
            np.testing.assert_array_equal(np.asarray(value), np.asarray(before[path]))
    assert apply(changed, random_image((1, 64, 64, 3)))["logits"].shape == (1, 64, 64, 5)
    assert changed.config.model.num_classes == 5 and changed.config.data.class_names == ()


def test_segformer_class_change_touches_only_its_classifier(publish):
    publish("segformer_b0.nvidia_cityscapes", refs.hf_segformer("b0", 19, seed=8).state_dict())
    lines = []
    pretrained.load("segformer_b0.nvidia_cityscapes", num_classes=11, log=lines.append)
    assert lines[0].endswith(": params/head/classifier/kernel, params/head/classifier/bias") or \
        lines[0].endswith(": params/head/classifier/bias, params/head/classifier/kernel")


def test_a_shape_mismatch_outside_the_heads_is_an_error_naming_the_variable():
    source = {("params", "conv1", "kernel"): np.zeros((7, 7, 3, 64), np.float32)}
    target = {("params", "conv1", "kernel"): jax.ShapeDtypeStruct((7, 7, 3, 32), np.float32)}
    with pytest.raises(pretrained.PretrainedError) as error:
        weights.merge(source, target, label="preset p", class_paths=set,
                      input_paths=lambda: {("params", "conv1", "kernel")}, log=quiet)
    assert str(error.value) == ("preset p: params/conv1/kernel: the checkpoint has shape "
                                "(7, 7, 3, 64), the model (7, 7, 3, 32)")


# ----------------------------------------------------------------------------- input channels


@functools.cache
def resnet18_reference():
    torchvision = torch_refs.import_torchvision()
    return torch_refs.randomize_bn(torchvision.models.resnet18(), seed=9).eval()


@pytest.mark.parametrize("channels", [1, 4, 6])
def test_other_input_channels_adapt_the_first_convolution(publish, channels):
    publish("resnet18.tv_in1k", resnet18_reference().state_dict())
    rgb = pretrained.load("resnet18.tv_in1k", log=quiet)
    lines = []
    adapted = pretrained.load("resnet18.tv_in1k", in_channels=channels, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith(
        f"preset resnet18.tv_in1k: params/conv1/kernel adapted from 3 to {channels} input")
    kernel = np.asarray(rgb.variables["params"]["conv1"]["kernel"])
    new = np.asarray(adapted.variables["params"]["conv1"]["kernel"])
    if channels == 1:
        np.testing.assert_allclose(new[..., 0, :], kernel.sum(axis=-2), rtol=1e-6, atol=1e-6)
    else:
        tiled = np.concatenate([kernel, kernel, kernel], axis=-2)[..., :channels, :]
        np.testing.assert_allclose(new, tiled * 3 / channels, rtol=1e-6, atol=1e-7)
    assert adapted.config.data.image_channels == channels
    if channels % 3 and channels != 1:
        return  # timm's rule keeps a grey image's response for 1 and multiples of 3 only
    # An image whose channels are all equal gives the RGB model's features.
    grey = random_image((1, 64, 64, 1))
    ours = apply(adapted, np.repeat(grey, channels, axis=-1))[32]
    theirs = apply(rgb, np.repeat(grey, 3, axis=-1))[32]
    assert torch_refs.max_rel_diff(ours, theirs) < TOLERANCE
