"""SegFormer-B0..B5 and the MiT encoders: parameter counts equal to transformers', logits
equal to transformers' and smp's after conversion, any input size, MiT under other decoders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs
from tests.models import transformer_refs as refs

TOLERANCE = 1e-4  # max |diff| / max |reference logit|

# SegformerForSemanticSegmentation(SegformerConfig(num_labels=150, <B config>)) parameter
# counts, measured with transformers 5.24 (the rounded 3.75M ... 84.71M).
HF_PARAMS_150 = {"b0": 3_752_694, "b1": 13_715_798, "b2": 27_461_974, "b3": 47_337_814,
                 "b4": 64_108_374, "b5": 84_708_694}


def abstract_variables(model, shape=(1, 64, 64, 3)):
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                          jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize("variant", sorted(HF_PARAMS_150))
def test_parameter_counts_equal_transformers(variant):
    model = registry.build({"name": f"segformer_{variant}"})
    ours = count_params(abstract_variables(model))
    assert ours == HF_PARAMS_150[variant]
    reference = refs.hf_segformer(variant, 150, meta=True)  # built on the meta device
    assert refs.torch_param_count(reference) == ours


def check_hf_parity(variant: str, num_classes: int, sizes, convert_size=None):
    """Converts a random transformers SegFormer once (variables shaped at `convert_size`)
    and compares logits at every (H, W) in `sizes`."""
    reference = refs.hf_segformer(variant, num_classes, seed=len(sizes) + num_classes)
    model = registry.build({"name": f"segformer_{variant}", "num_classes": num_classes,
                            "style": "hf"})
    variables = refs.converted(model, reference, "hf_segformer",
                               (1, *(convert_size or sizes[0]), 3))
    diffs = {}
    for index, size in enumerate(sizes):
        x = refs.random_image((2, *size, 3), seed=index)
        ours = refs.logits(model, variables, x)
        assert ours.shape == (2, *size, num_classes)
        diffs[size] = torch_refs.max_rel_diff(ours, refs.reference_logits(reference, x))
    print(f"segformer_{variant} vs transformers: {diffs}")  # shown with pytest -s
    assert max(diffs.values()) < TOLERANCE, diffs


def test_segformer_b0_matches_transformers_square_and_non_square():
    """64x64, and 72x104 (not a multiple of 32: the stages' maps are rounded up)."""
    check_hf_parity("b0", 7, [(64, 64), (72, 104)])


@pytest.mark.slow
def test_segformer_b2_matches_transformers_square_and_non_square():
    check_hf_parity("b2", 19, [(64, 64), (96, 64)])


def test_inference_at_another_resolution_needs_nothing_special():
    """No positional embeddings: variables shaped at 64x64 run at 96x128 and 40x56 (and
    still match transformers there), and the parameter shapes do not depend on the size."""
    model = registry.build({"name": "segformer_b0", "num_classes": 5})
    shapes = lambda size: jax.tree_util.tree_map(
        lambda leaf: leaf.shape, abstract_variables(model, (1, *size, 3)))
    assert shapes((64, 64)) == shapes((128, 96))
    check_hf_parity("b0", 5, [(96, 128), (40, 56)], convert_size=(64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[(64, 64), (64, 96)]])
def test_segformer_b0_matches_smp(sizes):
    """smp's Segformer('mit_b0'): 256 decoder channels, x4 align_corners upsampling, the
    fused key/value projection cut in two; smp needs sizes divisible by 32."""
    reference = refs.smp_segformer("b0", 5)
    model = registry.build({"name": "segformer_b0", "num_classes": 5, "style": "smp"})
    variables = refs.converted(model, reference, "smp_segformer", (1, *sizes[0], 3))
    assert count_params(variables) == refs.torch_param_count(reference)
    for index, size in enumerate(sizes):
        x = refs.random_image((1, *size, 3), seed=index)
        ours = refs.logits(model, variables, x)
        theirs = refs.reference_logits(reference, x, align_corners=True)
        assert torch_refs.max_rel_diff(ours, theirs) < TOLERANCE, size


def test_mit_encoder_alone_converts_from_transformers_segformer_model():
    """hf_mit fills a bare mit_b0 encoder from SegformerModel; the stage outputs match."""
    transformers = torch_refs.import_transformers()
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = refs.randomize_norms(transformers.SegformerModel(transformers.SegformerConfig(
        **{k: v for k, v in refs.SEGFORMER_CONFIGS["b0"].items()
           if k != "decoder_hidden_size"}))).eval()
    encoder = registry.build_part("encoder", {"name": "mit_b0", "layer_norm_epsilon": 1e-5})
    x = refs.random_image((1, 64, 96, 3))
    variables = refs.converted(encoder, reference, "hf_mit", x.shape)
    ours = jax.jit(lambda v, x: encoder.apply(v, x, train=False))(variables, x)
    with torch.no_grad():
        hidden = reference(torch_refs.to_nchw(x), output_hidden_states=True).hidden_states
    for stride, theirs in zip((4, 8, 16, 32), hidden):
        assert torch_refs.max_rel_diff(ours[stride], torch_refs.to_nhwc(theirs)) < TOLERANCE


@pytest.mark.parametrize("decoder", [{"name": "unet", "decoder_channels": (32, 16, 8, 8)},
                                     {"name": "deeplabv3plus", "features": 32}])
def test_mit_encoder_works_under_other_decoders(decoder):
    model = registry.build({"name": "segmenter", "num_classes": 3,
                            "encoder": {"name": "mit_b0"}, "decoder": decoder})
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    variables = abstract_variables(model)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False)["logits"],
                            variables, x)
    assert logits.shape == (1, 64, 64, 3)


def test_mit_features_are_keyed_by_stride_at_odd_sizes():
    encoder = registry.build_part("encoder", {"name": "mit_b0"})
    x = jax.ShapeDtypeStruct((1, 70, 101, 3), jnp.float32)
    features = jax.eval_shape(
        lambda x: encoder.init_with_output(jax.random.PRNGKey(0), x, train=False)[0], x)
    assert {s: f.shape for s, f in features.items()} == {
        4: (1, 18, 26, 32), 8: (1, 9, 13, 64), 16: (1, 5, 7, 160), 32: (1, 3, 4, 256)}


@pytest.mark.slow
def test_training_mode_applies_stochastic_depth_and_dropout():
    model = registry.build({"name": "segformer_b0", "num_classes": 3})
    x = refs.random_image((2, 32, 32, 3))
    variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x))(x)
    run = jax.jit(lambda v, x, key: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                rngs={"dropout": key})[0]["logits"])
    first, second = run(variables, x, jax.random.PRNGKey(1)), run(variables, x,
                                                                  jax.random.PRNGKey(2))
    assert np.isfinite(first).all() and not np.allclose(first, second)


def test_bad_options_name_the_field():
    with pytest.raises(ValueError, match="segformer: style must be one of"):
        registry.build({"name": "segformer_b0", "style": "mmseg"})
    decoder = registry.build_part("decoder", {"name": "segformer", "strides": (2, 4)})
    features = {4: jnp.zeros((1, 8, 8, 4)), 8: jnp.zeros((1, 4, 4, 4))}
    with pytest.raises(KeyError, match=r"segformer decoder: strides \[2\]"):
        decoder.init(jax.random.PRNGKey(0), features)
    encoder = registry.build_part("encoder", {"name": "mit_b0", "num_heads": (1, 2, 5)})
    with pytest.raises(ValueError, match="one entry per stage"):
        encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.slow
def test_convert_cli_picks_the_mapping_by_layout(tmp_path, capsys):
    """`python -m segjax.convert` on configs/segformer_b0_camvid.py: a transformers
    checkpoint goes through 'hf_segformer', an smp one through 'smp_segformer'."""
    from segjax.convert.__main__ import main  # pylint: disable=import-outside-toplevel
    from segjax.checkpoints import load_variables  # pylint: disable=import-outside-toplevel
    torch = torch_refs.import_torch()
    for mapping, reference in (("hf_segformer", refs.hf_segformer("b0", 11)),
                               ("smp_segformer", refs.smp_segformer("b0", 11))):
        checkpoint = tmp_path / f"{mapping}.pth"
        torch.save(reference.state_dict(), str(checkpoint))
        output = tmp_path / mapping
        assert main(["--checkpoint", str(checkpoint), "--config",
                     "configs/segformer_b0_camvid.py:smoke", "--output", str(output)]) == 0
        assert f"mapping {mapping!r}" in capsys.readouterr().out
        variables, metadata = load_variables(output)
        assert metadata["source"]["unused"] == [] and metadata["source"]["unmapped"] == []
        assert count_params(variables) == refs.torch_param_count(reference)
