"""Axial-DeepLab (Wang et al. 2020, arXiv:2003.07853): the registered whole models.

Axial-DeepLab is Panoptic-DeepLab on an Axial-ResNet: the encoder
(`segjax.models.encoders.axial_resnet`, Inception stem, output stride 16 by
removing the last stage's stride), then Panoptic-DeepLab's dual decoders and
heads (`segjax.models.decoders.panoptic_deeplab`) without ASPP: the paper
drops it because the attention is already global, and deeplab2's
Axial-DeepLab configs reduce it to its 1x1 projection
(`aspp_use_only_1x1_proj_conv`), as `rates=()` does here.

- `axial_deeplab_{s,m,l,xl}_panoptic`: return "logits", "center" and "offset".
- `axial_deeplab_{s,m,l,xl}`: the semantic decoder and head alone ("logits").

Parameter counts (`python -m segjax.models`): the relative positional
tables of a global attention cover the axis lengths of the input the model
is initialised on, so the count depends on that input. S, M and L are listed
at the paper's COCO configuration (133 classes, 1025 x 1025 crops), XL and
the semantic-only models at its Cityscapes configuration (19 classes,
1025 x 2049). The backbone alone matches the official PyTorch code's
Axial-ResNet counts exactly (tests/models/test_axial_deeplab.py); the whole
models' small gap to the paper's figures (docs/panoptic.md) is in parts the
paper does not specify (the size of its positional tables, its decoder
widths).
"""

from __future__ import annotations

from typing import Any

from segjax.models.encoders.axial_resnet import WIDTH_MULTIPLIERS, AxialResNet
from segjax.models.panoptic_deeplab import CITYSCAPES_INPUT, panoptic_segmenter
from segjax.models.registry import register

PAPER = "Wang et al. 2020, Axial-DeepLab, arXiv:2003.07853"
COCO_INPUT = (1, 1025, 1025, 3)
COCO_CLASSES, CITYSCAPES_CLASSES = 133, 19
# Which of the paper's tables gives each variant's parameter count.
PAPER_CONFIGURATION = {"s": "coco", "m": "coco", "l": "coco", "xl": "cityscapes"}
CONFIGURATIONS = {"coco": (COCO_INPUT, COCO_CLASSES),
                  "cityscapes": (CITYSCAPES_INPUT, CITYSCAPES_CLASSES)}


def axial_deeplab(variant: str = "l", num_classes: int = CITYSCAPES_CLASSES,
                  instance: bool = True, span: int | None = None,
                  max_input_size: int | None = None, encoder_options: dict | None = None,
                  decoder_options: dict | None = None, dtype: Any = None):
    """Axial-ResNet-`variant` (OS 16) + Panoptic-DeepLab's decoders without ASPP.

    `instance=False` keeps the semantic branch only; `span` and
    `max_input_size` set the attention's local span and positional tables.
    """
    if variant not in WIDTH_MULTIPLIERS:
        raise ValueError(f"axial_deeplab: variant must be one of {sorted(WIDTH_MULTIPLIERS)}, "
                         f"got {variant!r}")
    encoder = AxialResNet(**{"width_multiplier": WIDTH_MULTIPLIERS[variant], "output_stride": 16,
                             "span": span, "max_input_size": max_input_size, "dtype": dtype,
                             **(encoder_options or {})})
    return panoptic_segmenter(encoder, num_classes=num_classes, rates=(), instance=instance,
                              decoder_options=decoder_options, dtype=dtype)


CONFIGURATION_NOTES = {"coco": "COCO config: 133 classes, 1025x1025",
                       "cityscapes": "Cityscapes config: 19 classes, 1025x2049"}

for _variant in WIDTH_MULTIPLIERS:
    _configuration = PAPER_CONFIGURATION[_variant]
    _input_shape, _classes = CONFIGURATIONS[_configuration]
    register("model", f"axial_deeplab_{_variant}_panoptic", input_shape=_input_shape,
             paper=f"{PAPER} (Axial-DeepLab-{_variant.upper()}, panoptic; "
                   f"{CONFIGURATION_NOTES[_configuration]})",
             variant=_variant, num_classes=_classes)(axial_deeplab)
    register("model", f"axial_deeplab_{_variant}", input_shape=CITYSCAPES_INPUT,
             paper=f"{PAPER} (Axial-DeepLab-{_variant.upper()}, semantic only; "
                   f"{CONFIGURATION_NOTES['cityscapes']})",
             variant=_variant, num_classes=CITYSCAPES_CLASSES, instance=False)(axial_deeplab)
