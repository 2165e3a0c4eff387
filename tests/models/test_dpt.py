"""DPT (ViT-B/16, ViT-L/16, hybrid): parameter counts equal to transformers' reference
configurations, logits equal to DPTForSemanticSegmentation's after conversion (every readout,
square and non-square inputs, position embeddings resized), the encoder under other decoders."""

import jax
import jax.numpy as jnp
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs
from tests.models import transformer_refs as refs

TOLERANCE = 1e-4  # max |diff| / max |reference logit|

# DPTForSemanticSegmentation(DPTConfig(num_labels=150, **refs.DPT_CONFIGS[variant])) parameter
# counts (auxiliary head included), measured with transformers 5.24.
REFERENCE_PARAMS_150 = {"dpt_vit_b16": 111_807_980, "dpt_vit_l16": 343_960_364,
                        "dpt_hybrid": 123_307_884}
VARIANTS = {"dpt_vit_b16": "b16", "dpt_vit_l16": "l16", "dpt_hybrid": "hybrid"}

# A small DPT with every code path of the full ones (hidden 64, 4 blocks, fusion 32).
TINY_HF = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
           "intermediate_size": 128, "backbone_out_indices": [0, 1, 2, 3],
           "neck_hidden_sizes": [8, 16, 32, 64], "fusion_hidden_size": 32, "image_size": 64}


def tiny_segjax(num_classes: int, readout: str):
    encoder = {"name": "dpt_vit_b16", "hidden_size": 64, "depth": 4, "num_heads": 4,
               "mlp_dim": 128, "out_layers": (0, 1, 2, 3), "reassemble_features": (8, 16, 32, 64),
               "image_size": 64, "readout": readout, "layer_norm_epsilon": 1e-12}
    head = {"name": "fcn", "channels": 32, "dropout": 0.1}
    return registry.build({"name": "segmenter", "num_classes": num_classes, "encoder": encoder,
                           "decoder": {"name": "dpt", "features": 32}, "head": head,
                           "aux_head": head, "aux_stride": "decoder", "align_corners": True})


def abstract_variables(model, shape=(1, 64, 64, 3)):
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                          jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS_150))
def test_parameter_counts_equal_the_reference_configurations(name):
    ours = count_params(abstract_variables(registry.build({"name": name})))
    assert ours == REFERENCE_PARAMS_150[name]
    reference = refs.hf_dpt(VARIANTS[name], 150, meta=True)
    assert refs.torch_param_count(reference) == ours


def check_parity(model, reference, sizes, convert_size=None, label=""):
    variables = refs.converted(model, reference, "hf_dpt", (1, *(convert_size or sizes[0]), 3))
    assert count_params(variables) == refs.torch_param_count(reference)
    diffs = {}
    for index, size in enumerate(sizes):
        x = refs.random_image((2, *size, 3), seed=index)
        ours = refs.logits(model, variables, x)
        diffs[size] = torch_refs.max_rel_diff(ours, refs.hf_dpt_logits(reference, x))
    print(f"{label} vs transformers: {diffs}")  # shown with pytest -s
    assert max(diffs.values()) < TOLERANCE, diffs


@pytest.mark.parametrize("readout", ["project", "add", "ignore"])
def test_small_dpt_matches_transformers_for_every_readout(readout):
    """Position embeddings trained at 64x64 (a 4x4 grid) resized to 4x6 for 64x96."""
    reference = refs.hf_dpt("b16", 5, readout_type=readout, **TINY_HF)
    check_parity(tiny_segjax(5, readout), reference, [(64, 64), (64, 96)],
                 label=f"small DPT, readout {readout}")


def test_reference_forward_helper_is_transformers_forward():
    """hf_dpt_logits (the forward written out, for non-square grids) equals the model's
    own forward where that one works (square inputs)."""
    reference = refs.hf_dpt("b16", 5, **TINY_HF)
    x = refs.random_image((1, 64, 64, 3))
    assert torch_refs.max_rel_diff(refs.hf_dpt_logits(reference, x),
                                   refs.reference_logits(reference, x, align_corners=True)) == 0


@pytest.mark.slow
def test_dpt_vit_b16_matches_transformers_square_and_non_square():
    """The full ViT-B/16 DPT (image_size 64 for a small position-embedding grid)."""
    reference = refs.hf_dpt("b16", 11, image_size=64)
    model = registry.build({"name": "dpt_vit_b16", "num_classes": 11, "image_size": 64,
                            "layer_norm_epsilon": 1e-12})
    check_parity(model, reference, [(64, 64), (96, 64)], label="dpt_vit_b16")


@pytest.mark.slow
def test_dpt_hybrid_matches_transformers():
    reference = refs.hf_dpt("hybrid", 6, image_size=64)
    model = registry.build({"name": "dpt_hybrid", "num_classes": 6, "image_size": 64,
                            "layer_norm_epsilon": 1e-12})
    check_parity(model, reference, [(64, 96)], label="dpt_hybrid")


def test_dpt_encoder_returns_strides_4_to_32_and_works_under_other_decoders():
    encoder = registry.build_part("encoder", {"name": "dpt_vit_b16"})
    x = jax.ShapeDtypeStruct((1, 96, 128, 3), jnp.float32)
    features = jax.eval_shape(
        lambda x: encoder.init_with_output(jax.random.PRNGKey(0), x, train=False)[0], x)
    assert {s: f.shape for s, f in features.items()} == {
        4: (1, 24, 32, 96), 8: (1, 12, 16, 192), 16: (1, 6, 8, 384), 32: (1, 3, 4, 768)}
    model = registry.build({"name": "segmenter", "num_classes": 3,
                            "encoder": {"name": "dpt_vit_hybrid"},
                            "decoder": {"name": "unet", "decoder_channels": (16, 16, 16, 16)}})
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["logits"],
                            abstract_variables(model), jax.ShapeDtypeStruct((1, 64, 64, 3),
                                                                            jnp.float32))
    assert logits.shape == (1, 64, 64, 3)


def test_aux_head_reads_the_decoder_output():
    model = registry.build({"name": "dpt_vit_b16", "num_classes": 4})
    outputs = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                             abstract_variables(model),
                             jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    assert outputs["logits"].shape == outputs["aux_logits"].shape == (1, 64, 64, 4)
    without = registry.build({"name": "dpt_vit_b16", "num_classes": 4, "aux": False})
    assert "aux_head" not in abstract_variables(without)["params"]


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="dpt_hybrid: readout must be 'project'"):
        registry.build({"name": "dpt_hybrid", "readout": "add"})
    encoder = registry.build_part("encoder", {"name": "dpt_vit_b16", "readout": "cls"})
    with pytest.raises(ValueError, match="DPTViT: readout must be one of"):
        abstract_variables(encoder)
    encoder = registry.build_part("encoder", {"name": "dpt_vit_b16", "out_layers": (2, 5, 8)})
    with pytest.raises(ValueError, match="need one entry per reassembled feature"):
        abstract_variables(encoder)
    encoder = registry.build_part("encoder", {"name": "dpt_vit_b16", "out_layers": (2, 5, 8, 12)})
    with pytest.raises(ValueError, match=r"out_layers \[12\] are not block indices"):
        abstract_variables(encoder)


@pytest.mark.parametrize("size", [(70, 90)])
def test_bit_resnet50_matches_transformers_bit_backbone(size):
    """DPT-Hybrid's ResNet-50: segjax's ResNet with style='bit' against transformers'
    BitBackbone (weight standardisation, group norm, 'SAME' padding: odd sizes pad at the end)."""
    transformers = torch_refs.import_transformers()
    torch = torch_refs.import_torch()
    from segjax.convert.dpt import hf_bit_backbone  # pylint: disable=import-outside-toplevel
    from segjax.models.encoders.resnet import ResNet  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    reference = refs.randomize_norms(transformers.BitBackbone(transformers.BitConfig(
        layer_type="bottleneck", global_padding="same", depths=[3, 4, 9],
        out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True))).eval()
    encoder = ResNet(50, style="bit", stage_sizes=(3, 4, 9))
    x = refs.random_image((1, *size, 3))
    shapes = jax.eval_shape(lambda x: encoder.init(jax.random.PRNGKey(0), x), x)
    from segjax import convert  # pylint: disable=import-outside-toplevel
    variables, _ = convert.convert(torch_refs.state_dict_numpy(reference), shapes,
                                   hf_bit_backbone(), strict=True)
    ours = jax.jit(lambda v, x: encoder.apply(v, x))(variables, x)
    with torch.no_grad():
        theirs = reference(torch_refs.to_nchw(x)).feature_maps
    for stride, expected in zip((4, 8, 16), theirs):
        assert torch_refs.max_rel_diff(ours[stride], torch_refs.to_nhwc(expected)) < TOLERANCE
