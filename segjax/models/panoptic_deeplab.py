"""Panoptic-DeepLab (Cheng et al. 2020, arXiv:1911.10194): the registered whole models.

`panoptic_deeplab_resnet50`: segjax's torchvision-layout ResNet-50 (so
ImageNet weights convert with `segjax.convert`) at output stride 16, the
dual decoders with ASPP rates (6, 12, 18) and the heads of
`segjax.models.decoders.panoptic_deeplab`. Its `__call__(x, *, train)`
returns "logits" (semantic), "center" (one heatmap channel) and "offset"
(dy, dx in input pixels), all at the input's resolution; targets, losses,
post-processing and PQ are in `segjax.data.panoptic` and `segjax.panoptic`.

The paper's ResNet-50 model uses TF DeepLab's ResNet-50 with its three-conv
("beta") stem; deeplab2's Cityscapes ResNet-50 configs run it at output
stride 32 with ASPP rates (3, 6, 9). Both are options here
(`encoder_options={"deep_stem": True}`, `output_stride=32`); the registered
default keeps the torchvision stem for weight conversion and the paper's
output stride 16. The parameter count of `python -m segjax.models` is at
the Cityscapes configuration (19 classes, 1025 x 2049).
"""

from __future__ import annotations

from typing import Any, Sequence

from segjax.models.decoders.deeplab import rates_for
from segjax.models.decoders.panoptic_deeplab import PanopticDeepLabDecoder, PanopticDeepLabHead
from segjax.models.registry import build_part, register
from segjax.models.segmenter import Segmenter

PAPER = "Cheng et al. 2020, Panoptic-DeepLab, arXiv:1911.10194"
CITYSCAPES_INPUT = (1, 1025, 2049, 3)


def panoptic_segmenter(encoder, *, num_classes: int, rates: Sequence[int],
                       instance: bool = True, decoder_options: dict | None = None,
                       dtype: Any = None) -> Segmenter:
    """`encoder` + the dual decoders (or the semantic one alone) + the semantic head."""
    decoder = PanopticDeepLabDecoder(rates=tuple(rates), instance=instance, dtype=dtype,
                                     **(decoder_options or {}))
    return Segmenter(encoder, decoder, PanopticDeepLabHead(num_classes, dtype=dtype),
                     align_corners=True)


@register("model", "panoptic_deeplab_resnet50",
          paper=PAPER + " (ResNet-50; Cityscapes config: 19 classes, 1025x2049)",
          input_shape=CITYSCAPES_INPUT)
def panoptic_deeplab_resnet50(num_classes: int = 19, output_stride: int = 16,
                              encoder_options: dict | None = None,
                              decoder_options: dict | None = None, dtype: Any = None):
    encoder = build_part("encoder", {"name": "resnet50", "output_stride": output_stride,
                                     "dtype": dtype, **(encoder_options or {})})
    return panoptic_segmenter(encoder, num_classes=num_classes,
                              rates=rates_for(output_stride, (6, 12, 18)),
                              decoder_options=decoder_options, dtype=dtype)
