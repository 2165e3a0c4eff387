"""UNet++, Linknet, FPN and PSPNet on ResNet-34 against segmentation_models_pytorch 0.6.0.

For each, `<arch>_resnet34` must hold exactly the parameters of
`smp.<Arch>("resnet34", encoder_weights=None, classes=K)` and, after
`segjax.convert` with the arch's registered mapping (strict: every tensor used,
every variable filled), give its logits within 1e-4 of their scale (float32,
eval mode) at a square and a non-square input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs

NUM_CLASSES = 7
# smp.<Arch>("resnet34", encoder_weights=None, classes=7), counted with smp 0.6.0. Each is the
# ResNet-34 encoder without fc (21,284,672; smp's PSPNet keeps layer3/layer4 although its
# encoder_depth=3 never runs them) + the decoder + the head.
SMP_PARAMS = {
    "unetplusplus_resnet34": 26_079_479,
    "linknet_resnet34": 21_772_135,
    "fpn_resnet34": 23_156_167,
    "pspnet_resnet34": 21_465_639,
}
SMP_ARCH = {"unetplusplus_resnet34": "UnetPlusPlus", "linknet_resnet34": "Linknet",
            "fpn_resnet34": "FPN", "pspnet_resnet34": "PSPNet"}
MAPPING = {"unetplusplus_resnet34": "smp_unetplusplus", "linknet_resnet34": "smp_linknet",
           "fpn_resnet34": "smp_fpn", "pspnet_resnet34": "smp_pspnet"}
INPUTS = ((1, 64, 64, 3), (2, 96, 64, 3))   # square, and non-square with a batch of 2


def randomize_norms(model, seed: int = 0):
    """BatchNorm statistics and every norm's affine parameters (GroupNorm's too) at random."""
    torch = torch_refs.import_torch()
    torch_refs.randomize_bn(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="module")
def smp():
    return torch_refs.import_smp()


@pytest.mark.parametrize("name", sorted(SMP_PARAMS))
def test_parameter_count_is_smps(name, smp):
    model = registry.build({"name": name, "num_classes": NUM_CLASSES})
    x = jax.ShapeDtypeStruct(INPUTS[0], jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    reference = getattr(smp, SMP_ARCH[name])("resnet34", encoder_weights=None,
                                              classes=NUM_CLASSES)
    assert sum(p.numel() for p in reference.parameters()) == SMP_PARAMS[name]
    assert count_params(variables) == SMP_PARAMS[name]


def reference_and_converted(name, smp, shape):
    """A BN/GN-randomised smp model and its weights converted (strictly) into `name`'s variables."""
    from segjax import convert  # pylint: disable=import-outside-toplevel
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = randomize_norms(getattr(smp, SMP_ARCH[name])(
        "resnet34", encoder_weights=None, classes=NUM_CLASSES)).eval()
    model = registry.build({"name": name, "num_classes": NUM_CLASSES})
    shapes = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False),
                            jax.ShapeDtypeStruct(shape, jnp.float32))
    variables, report = convert.convert(torch_refs.state_dict_numpy(reference), shapes,
                                        convert.get_mapping(MAPPING[name]).factory(),
                                        strict=True)
    assert report.complete
    return reference, model, variables


@pytest.mark.parametrize("name", sorted(SMP_PARAMS))
def test_conversion_fills_every_variable(name, smp):
    """Strict conversion: every smp tensor has a destination of its shape and fills all."""
    reference_and_converted(name, smp, INPUTS[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMP_PARAMS))
def test_logits_match_smp_after_conversion(name, smp):
    rng = np.random.default_rng(0)
    for shape in INPUTS:
        reference, model, variables = reference_and_converted(name, smp, shape)
        x = rng.standard_normal(shape).astype(np.float32)
        ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False)["logits"])(
            variables, x))
        theirs = torch_refs.to_nhwc(torch_refs.run_nhwc(reference, x))
        assert ours.shape == theirs.shape == shape[:3] + (NUM_CLASSES,)
        difference = torch_refs.max_rel_diff(ours, theirs)
        print(f"{name} {shape}: max |ours - smp| / max |smp| = {difference:.2e}")
        assert difference < 1e-4, (name, shape)
