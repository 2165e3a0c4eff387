"""Mappings of PyTorch VGG-16 and FCN nets onto `segjax.models.encoders.vgg` / FCN.

- 'torchvision_vgg16': torchvision's `vgg16` (`features.{i}` convs, `classifier.0`
  and `classifier.3` Linear layers -> the convolutionalised fc6 (7x7) and fc7
  when the encoder has `fc="fcn"`; `classifier.6`, the ImageNet classifier, is
  dropped). This is how FCN was initialised: ImageNet VGG-16 with its fully
  connected layers reshaped into convolutions.
- 'torchvision_vgg16_bn': the same for `vgg16_bn` (`norm="batch"`).
- 'torchfcn': wkentaro's pytorch-fcn (`torchfcn.models.FCN32s/16s/8s`, a
  layer-for-layer port of the Caffe reference nets and their weights):
  `conv{s}_{i}`, `fc6`, `fc7`, `score_fr`, `score_pool4`, `score_pool3` and the
  transposed convolutions `upscore2` (-> stride 16), `upscore_pool4` (-> stride
  8) and the final `upscore` / `upscore16` / `upscore8`.
"""

from __future__ import annotations

from segjax.convert.core import IGNORE, Target, register_mapping, rules
from segjax.models.encoders.vgg import VGG16_STAGES


def _feature_indices(batch_norm: bool) -> dict[int, str]:
    """torchvision `features` index -> flax path of each conv (and BN)."""
    paths, index = {}, 0
    for stage, (_, depth) in enumerate(VGG16_STAGES, 1):
        for layer in range(1, depth + 1):
            paths[index] = f"conv{stage}_{layer}/conv"
            if batch_norm:
                paths[index + 1] = f"conv{stage}_{layer}/norm/bn"
            index += 3 if batch_norm else 2  # conv, (bn), relu
        index += 1  # max pool
    return paths


def _torchvision_vgg(batch_norm: bool):
    paths = _feature_indices(batch_norm)
    return rules(
        (r"features\.(\d+)", lambda m: paths.get(int(m.group(1)))),
        (r"classifier\.0", "fc/fc6/conv"),
        (r"classifier\.3", "fc/fc7/conv"),
        (r"classifier\.6", IGNORE),
    )


@register_mapping("torchvision_vgg16", encoders=("vgg16",))
def torchvision_vgg16():
    """torchvision vgg16 (ImageNet fc6/fc7 become FCN's 7x7 / 1x1 convolutions)."""
    return _torchvision_vgg(batch_norm=False)


@register_mapping("torchvision_vgg16_bn", encoders=("vgg16",))
def torchvision_vgg16_bn():
    """torchvision vgg16_bn (encoder with norm='batch')."""
    return _torchvision_vgg(batch_norm=True)


@register_mapping("torchfcn", models=("fcn32s", "fcn16s", "fcn8s"))
def torchfcn():
    """pytorch-fcn (torchfcn) FCN32s / FCN16s / FCN8s / FCN8sAtOnce."""
    return rules(
        (r"conv(\d)_(\d)", r"encoder/conv\1_\2/conv"),
        (r"fc([67])", r"encoder/fc/fc\1/conv"),
        (r"score_fr", "decoder/score_fr"),
        (r"score_pool4", "decoder/score16"),
        (r"score_pool3", "decoder/score8"),
        (r"upscore2", Target("decoder/upscore16", transposed=True)),
        (r"upscore_pool4", Target("decoder/upscore8", transposed=True)),
        (r"upscore(8|16)?", Target("decoder/upscore_final", transposed=True)),
    )
