"""UNet++, Linknet, FPN and PSPNet against segmentation_models_pytorch 0.6.0.

For each, `<arch>_resnet34` must hold exactly the parameters of
`smp.<Arch>("resnet34", encoder_weights=None, classes=K)` and, after
`segjax.convert` with the arch's registered mapping (strict: every tensor used,
every variable filled), give its logits within 1e-4 of their scale (float32,
eval mode) at a square and a non-square input. The same holds for smp's models
on ResNet-50 and MobileNetV2 against `smp_<arch>(encoder)` (the decoder files'
builders), at the non-square input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.decoders import fpn, linknet, pspnet, unetplusplus
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
BUILDERS = {"unetplusplus_resnet34": unetplusplus.smp_unetplusplus,
            "linknet_resnet34": linknet.smp_linknet, "fpn_resnet34": fpn.smp_fpn,
            "pspnet_resnet34": pspnet.smp_pspnet}
# smp encoder name -> segjax encoder name, for the other encoders checked.
OTHER_ENCODERS = {"resnet50": "resnet50", "mobilenet_v2": "mobilenetv2"}
OTHER_PAIRS = [(name, encoder) for name in sorted(SMP_PARAMS) for encoder in OTHER_ENCODERS]


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


def smp_reference(name, smp, encoder="resnet34"):
    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    return randomize_norms(getattr(smp, SMP_ARCH[name])(
        encoder, encoder_weights=None, classes=NUM_CLASSES)).eval()


def segjax_model(name, encoder="resnet34"):
    if encoder == "resnet34":
        return registry.build({"name": name, "num_classes": NUM_CLASSES})
    return BUILDERS[name](OTHER_ENCODERS[encoder], NUM_CLASSES)


def reference_and_converted(name, smp, shape, encoder="resnet34"):
    """A BN/GN-randomised smp model and its weights converted (strictly) into segjax's model."""
    from segjax import convert  # pylint: disable=import-outside-toplevel
    reference = smp_reference(name, smp, encoder)
    model = segjax_model(name, encoder)
    shapes = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False),
                            jax.ShapeDtypeStruct(shape, jnp.float32))
    variables, report = convert.convert(torch_refs.state_dict_numpy(reference), shapes,
                                        convert.get_mapping(MAPPING[name]).factory(),
                                        strict=True)
    assert report.complete
    return reference, model, variables


def check_logits(name, smp, shape, encoder="resnet34"):
    reference, model, variables = reference_and_converted(name, smp, shape, encoder)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False)["logits"])(
        variables, x))
    theirs = torch_refs.to_nhwc(torch_refs.run_nhwc(reference, x))
    assert ours.shape == theirs.shape == shape[:3] + (NUM_CLASSES,)
    difference = torch_refs.max_rel_diff(ours, theirs)
    print(f"smp {SMP_ARCH[name]} on {encoder} {shape}: max |ours - smp| / max |smp| = "
          f"{difference:.2e}")
    assert difference < 1e-4, (name, encoder, shape)


@pytest.mark.parametrize("name,encoder", OTHER_PAIRS)
def test_parameter_count_is_smps_on_other_encoders(name, encoder, smp):
    model = segjax_model(name, encoder)
    x = jax.ShapeDtypeStruct(INPUTS[0], jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    reference = getattr(smp, SMP_ARCH[name])(encoder, encoder_weights=None, classes=NUM_CLASSES)
    assert count_params(variables) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", sorted(SMP_PARAMS))
def test_conversion_fills_every_variable(name, smp):
    """Strict conversion: every smp tensor has a destination of its shape and fills all."""
    reference_and_converted(name, smp, INPUTS[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMP_PARAMS))
def test_logits_match_smp_after_conversion(name, smp):
    for shape in INPUTS:
        check_logits(name, smp, shape)


@pytest.mark.slow
@pytest.mark.parametrize("name,encoder", OTHER_PAIRS)
def test_logits_match_smp_on_other_encoders(name, encoder, smp):
    check_logits(name, smp, INPUTS[1], encoder)
