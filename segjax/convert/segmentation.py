"""Mappings of PyTorch segmentation models onto the registered DeepLab/FCN models.

- 'torchvision_fcn' / 'torchvision_deeplabv3': torchvision's `fcn_resnet50/101`,
  and `deeplabv3_resnet50/101` / `deeplabv3_mobilenet_v3_large` (with or without
  `aux_classifier`) onto the `tv_*` models (`segjax.models.torchvision_models`):
  `backbone.*` through the backbone's own mapping into `encoder`,
  `classifier.*` into the decoder and head, `aux_classifier.*` into `aux_head`.
- 'smp_deeplabv3plus': segmentation_models_pytorch's `DeepLabV3Plus` with a
  ResNet encoder onto `deeplabv3plus_resnet50/101` (style "smp").

DeepLabHead (torchvision): classifier.0 is the ASPP (`convs.0` 1x1,
`convs.1-3` atrous, `convs.4` image pooling whose index 0 is the pooling
itself, `project`), classifier.1/2 the 3x3 conv + BN, classifier.4 the
classifier. FCNHead: index 0/1 conv + BN, index 4 the classifier.
"""

from __future__ import annotations

from segjax.convert.core import chain, get_mapping, prefixed, register_mapping, rules

ASPP = (
    (r"convs\.0\.0", "aspp/conv1x1/conv"),
    (r"convs\.0\.1", "aspp/conv1x1/norm/bn"),
    (r"convs\.4\.1", "aspp/pooling/conv"),
    (r"convs\.4\.2", "aspp/pooling/norm/bn"),
    (r"project\.0", "aspp/project/conv"),
    (r"project\.1", "aspp/project/norm/bn"),
)


def _fcn_head(torch_prefix: str, flax_prefix: str):
    return rules(
        (torch_prefix + r"\.0", flax_prefix + "/block/conv"),
        (torch_prefix + r"\.1", flax_prefix + "/block/norm/bn"),
        (torch_prefix + r"\.4", flax_prefix + "/classifier"),
    )


def _backbone():
    """torchvision's backbone: a ResNet (`backbone.layer1...`) or the MobileNetV3 `features`
    Sequential itself (`backbone.4.block...`, i.e. `features.4.block...`)."""
    resnet = prefixed("backbone.", "encoder", get_mapping("torchvision_resnet").factory())
    mobilenet = prefixed("backbone.", "encoder", prefixed_features(
        get_mapping("torchvision_mobilenet_v3_large").factory()))
    return chain(resnet, mobilenet)


def prefixed_features(mapping):
    """A mapping of `features.{i}...` names applied to bare `{i}...` names."""
    return lambda module: mapping("features." + module)


def _deeplab_head():
    aspp = [(r"classifier\.0\." + pattern, "decoder/" + path) for pattern, path in ASPP]
    return rules(
        *aspp,
        (r"classifier\.0\.convs\.([1-3])\.0",
         lambda m: f"decoder/aspp/atrous{int(m.group(1)) - 1}/conv"),
        (r"classifier\.0\.convs\.([1-3])\.1",
         lambda m: f"decoder/aspp/atrous{int(m.group(1)) - 1}/norm/bn"),
        (r"classifier\.1", "decoder/head_conv/conv"),
        (r"classifier\.2", "decoder/head_conv/norm/bn"),
        (r"classifier\.4", "head/classifier"),
    )


@register_mapping("torchvision_fcn", models=("tv_fcn_resnet50", "tv_fcn_resnet101"))
def torchvision_fcn():
    """torchvision.models.segmentation fcn_resnet50/101 (+ aux_classifier)."""
    return chain(_backbone(), _fcn_head(r"classifier", "head"),
                 _fcn_head(r"aux_classifier", "aux_head"))


@register_mapping("torchvision_deeplabv3",
                  models=("tv_deeplabv3_resnet50", "tv_deeplabv3_resnet101",
                          "tv_deeplabv3_mobilenet_v3_large"))
def torchvision_deeplabv3():
    """torchvision.models.segmentation deeplabv3_* (+ aux_classifier)."""
    return chain(_backbone(), _deeplab_head(), _fcn_head(r"aux_classifier", "aux_head"))


def _smp_separable(torch_prefix: str, flax_prefix: str, norm: str):
    """smp's SeparableConv2d (index 0 depthwise, 1 pointwise) and the BN at `norm`."""
    return (
        (torch_prefix + r"\.0", flax_prefix + "/depthwise"),
        (torch_prefix + r"\.1", flax_prefix + "/pointwise/conv"),
        (norm, flax_prefix + "/pointwise/norm/bn"),
    )


@register_mapping("smp_deeplabv3plus",
                  models=("deeplabv3plus_resnet50", "deeplabv3plus_resnet101"))
def smp_deeplabv3plus():
    """segmentation_models_pytorch DeepLabV3Plus (ResNet encoders, smp 0.6 layout)."""
    aspp = [(r"decoder\.aspp\.0\." + pattern, "decoder/" + path) for pattern, path in ASPP]
    atrous = []
    for index in (1, 2, 3):
        atrous += _smp_separable(rf"decoder\.aspp\.0\.convs\.{index}\.0",
                                 f"decoder/aspp/atrous{index - 1}",
                                 rf"decoder\.aspp\.0\.convs\.{index}\.1")
    return chain(
        prefixed("encoder.", "encoder", get_mapping("torchvision_resnet").factory()),
        rules(
            *aspp,
            *atrous,
            (r"decoder\.aspp\.1\.0", "decoder/aspp_conv/depthwise"),
            (r"decoder\.aspp\.1\.1", "decoder/aspp_conv/pointwise/conv"),
            (r"decoder\.aspp\.2", "decoder/aspp_conv/pointwise/norm/bn"),
            (r"decoder\.block1\.0", "decoder/low_level/conv"),
            (r"decoder\.block1\.1", "decoder/low_level/norm/bn"),
            *_smp_separable(r"decoder\.block2\.0", "decoder/fuse0", r"decoder\.block2\.1"),
            (r"segmentation_head\.0", "head/classifier"),
        ),
    )
