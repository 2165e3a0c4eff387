"""The preset table is well-formed: every entry's model builds with the stated parameter count,
its source is pinned and checkable, its converter takes a full-size checkpoint in its layout;
every registered model has a preset or a reason; docs/pretrained.md is the generated table."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest

from segjax import registry
from segjax.convert import core
from segjax.pretrained import PRESETS, UNAVAILABLE, __main__ as listing, weights
from segjax.pretrained.presets import Preset
from tests import torch_refs
from tests.models import transformer_refs as refs

ROOT = Path(__file__).resolve().parents[2]


def smallest_per_converter() -> set[str]:
    chosen: dict[str, Preset] = {}
    for preset in PRESETS.values():
        if preset.converter not in chosen or preset.parameters < chosen[
                preset.converter].parameters:
            chosen[preset.converter] = preset
    return {preset.name for preset in chosen.values()}


FAST_PARAMETERS = 30_000_000
FAST = {name for name in smallest_per_converter() if PRESETS[name].parameters < FAST_PARAMETERS}


def by_size(names) -> list:
    """Parameters for a test over presets: the smallest of each converter fast (under 30M
    parameters: the ViT, hybrid and Xception families are slow only), the rest slow."""
    return [name if name in FAST else pytest.param(name, marks=pytest.mark.slow)
            for name in sorted(names)]


def test_docs_page_is_the_generated_table():
    assert (ROOT / "docs" / "pretrained.md").read_text() == listing.markdown(), \
        "regenerate: python -m segjax.pretrained --markdown > docs/pretrained.md"


def test_every_registered_model_has_a_preset_or_a_reason():
    with_weights = {p.model_name for p in PRESETS.values() if p.part == "model"}
    without = [name for models, _ in UNAVAILABLE for name in models]
    assert len(without) == len(set(without))
    assert not with_weights & set(without)
    generic = {"segmenter"}   # encoder + decoder + heads composed from a config: no family
    assert set(registry.names("model")) - generic == with_weights | set(without)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_entry_is_pinned_and_complete(name):
    preset = PRESETS[name]
    source = preset.source
    if source.kind == "hub":
        assert re.fullmatch(r"[0-9a-f]{40}", source.revision), "a Hub file needs a commit"
    else:
        assert source.kind == "url" and source.location.startswith("https://")
        assert source.file_name.endswith(f"-{source.sha256}.pth")   # the published prefix
    assert preset.converter in core.mapping_names()
    assert preset.licence and preset.paper and preset.dataset and preset.metric
    assert preset.normalization is not None
    assert len(preset.normalization.mean) == len(preset.normalization.std) == 3
    if preset.part == "model":
        assert preset.num_classes == preset.model["num_classes"] == len(preset.class_names)
    else:
        assert preset.num_classes is None and not preset.class_names
    assert name.startswith(preset.model_name + ".")


@pytest.mark.parametrize("name", by_size(PRESETS))
def test_model_builds_with_the_stated_parameter_count(name):
    preset = PRESETS[name]
    shapes = weights.abstract_variables(weights.build(preset.model, preset.part),
                                        (1, *weights.INIT_SIZE, 3))
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(shapes["params"]))
    assert count == preset.parameters


# ----------------------------------------------------------------------------- full-size layouts


def _torchvision(preset: Preset):
    torchvision = torch_refs.import_torchvision()
    if preset.part == "model":
        builder = getattr(torchvision.models.segmentation, preset.model_name[len("tv_"):])
        return builder(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    return getattr(torchvision.models, preset.reference.rsplit(".", 1)[-1])()


def _mmseg_v1c(preset: Preset):
    from tests.pretrained.test_loading import mmseg_v1c_state_dict, timm_v1c
    depth = int(re.search(r"resnet(\d+)", preset.model_name).group(1))
    return mmseg_v1c_state_dict(timm_v1c(depth))


def _hf_vit(preset: Preset):
    transformers = torch_refs.import_transformers()
    large = "l16" in preset.model_name
    config = transformers.ViTConfig(
        image_size=384, patch_size=16, num_labels=1000, hidden_size=1024 if large else 768,
        num_hidden_layers=24 if large else 12, num_attention_heads=16 if large else 12,
        intermediate_size=4096 if large else 3072)
    return transformers.ViTForImageClassification(config)


def _timm(preset: Preset):
    timm = torch_refs.import_timm()
    name = {"timm_xception": "xception65", "timm_vit": "vit_base_r50_s16_384"}[preset.converter]
    return timm.create_model(name, pretrained=False)


def _smp_mit(preset: Preset):
    return torch_refs.import_smp().encoders.get_encoder(preset.model_name, weights=None)


REFERENCES = {
    "torchvision_resnet": _torchvision, "torchvision_mobilenet_v2": _torchvision,
    "torchvision_mobilenet_v3_large": _torchvision, "torchvision_vgg16": _torchvision,
    "torchvision_fcn": _torchvision, "torchvision_deeplabv3": _torchvision,
    "resnet_deep_stem": _mmseg_v1c, "hf_vit": _hf_vit, "timm_xception": _timm,
    "timm_vit": _timm, "smp_mit": _smp_mit,
    "hf_segformer": lambda p: refs.hf_segformer(p.model_name[-2:], p.num_classes, meta=True),
    "hf_dpt": lambda p: refs.hf_dpt(p.model_name.rsplit("_", 1)[-1], p.num_classes, meta=True),
}


def reference_state_dict(preset: Preset) -> dict:
    """Tensors of the preset's full-size reference module: its names and shapes (zeros where
    the module was built on the meta device)."""
    reference = REFERENCES[preset.converter](preset)
    state = reference if isinstance(reference, dict) else reference.state_dict()
    return {name: np.zeros(tuple(t.shape), np.float32) if t.is_meta else t.numpy()
            for name, t in state.items()}


def test_every_converter_has_a_full_size_reference():
    assert {preset.converter for preset in PRESETS.values()} <= set(REFERENCES)


@pytest.mark.parametrize("name", by_size(PRESETS))
def test_converter_takes_a_full_size_checkpoint_in_the_preset_layout(name):
    preset = PRESETS[name]
    converted = weights.convert_native(preset, reference_state_dict(preset), f"preset {name}")
    expected = weights.flat(weights.abstract_variables(weights.build(preset.model, preset.part),
                                                       (1, *weights.INIT_SIZE, 3)))
    fresh = {p for p in expected
             if any(re.fullmatch(rule, "/".join(p[1:])) for rule in preset.fresh)}
    assert set(converted) == set(expected) - fresh
    for path, value in converted.items():
        assert tuple(np.shape(value)) == tuple(expected[path].shape), weights.show(path)
