"""smp-style U-Net decoder and U-Net-ResNet34: structure, parameter count, parity with smp."""

import jax
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs

# smp.Unet("resnet34", encoder_weights=None, classes=11): 21,284,672 ResNet-34 encoder
# weights (no fc) + the decoder + the 3x3 head; counted with smp 0.6.0.
SMP_UNET_RESNET34_PARAMS_11_CLASSES = 24_437_819


@pytest.fixture(scope="module")
def initialised():
    """The model, its variables and a 32x32 input (the smallest a stride-32 encoder takes)."""
    model = registry.build({"name": "unet_resnet34", "num_classes": 11})
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), x), x


def test_unet_resnet34_structure_and_param_count(initialised):
    model, variables, x = initialised
    assert count_params(variables) == SMP_UNET_RESNET34_PARAMS_11_CLASSES
    decoder = variables["params"]["decoder"]
    # in = upsampled + skip channels: 512+256, 256+128, 128+64, 64+64, 32 (no skip at stride 1)
    expected_in = [768, 384, 192, 128, 32]
    for index, (c_in, c_out) in enumerate(zip(expected_in, (256, 128, 64, 32, 16))):
        assert decoder[f"block{index}"]["conv1"]["conv"]["kernel"].shape == (3, 3, c_in, c_out)
        assert "bias" not in decoder[f"block{index}"]["conv1"]["conv"]
    assert variables["params"]["head"]["classifier"]["kernel"].shape == (3, 3, 16, 11)
    assert jax.eval_shape(model.apply, variables, x)["logits"].shape == (1, 32, 32, 11)


def test_unet_decoder_rejects_empty_features():
    decoder = registry.build_part("decoder", {"name": "unet"})
    with pytest.raises(ValueError, match="unet decoder: the encoder returned no features"):
        decoder.init(jax.random.PRNGKey(0), {})


def test_unet_resnet34_matches_smp(initialised):
    """Same outputs as smp's Unet("resnet34") with its (random, BN-randomised) weights."""
    smp = torch_refs.import_smp()
    from segjax import convert  # pylint: disable=import-outside-toplevel

    reference = torch_refs.randomize_bn(
        smp.Unet("resnet34", encoder_weights=None, classes=11)).eval()
    assert sum(p.numel() for p in reference.parameters()) == SMP_UNET_RESNET34_PARAMS_11_CLASSES
    model, variables, x = initialised
    variables, _ = convert.convert(torch_refs.state_dict_numpy(reference), variables,
                                   convert.get_mapping("smp_unet").factory(), strict=True)
    ours = jax.jit(model.apply)(variables, x)["logits"]
    theirs = torch_refs.to_nhwc(torch_refs.run_nhwc(reference, x))
    assert torch_refs.max_rel_diff(ours, theirs) < 1e-4
