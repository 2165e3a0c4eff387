"""The generic "segmenter" model: any registered encoder + decoder + head.

    config.model.name = "segmenter"
    config.model.encoder = {"name": "resnet50", "output_stride": 16}
    config.model.decoder = {"name": "deeplabv3plus"}
    config.model.head = {"name": "conv", "kernel_size": 1}   # optional

Named architectures (deeplabv3plus_resnet50, fcn8s, ...) register their own
model factories that return the same `Segmenter`.
"""

from __future__ import annotations

from typing import Any, Mapping

from segjax.models import registry
from segjax.models.segmenter import Segmenter


@registry.register("model", "segmenter")
def build_segmenter(encoder, decoder, num_classes: int, head: Mapping[str, Any] | None = None,
                    aux_head: Mapping[str, Any] | None = None, aux_stride: int | None = None,
                    align_corners: bool = False, dtype=None):
    """A `Segmenter` from already-built encoder and decoder modules and head configs."""
    head_module = registry.build_part("head", head or {"name": "conv"},
                                      num_classes=num_classes, dtype=dtype)
    aux_module = (registry.build_part("head", aux_head, num_classes=num_classes, dtype=dtype)
                  if aux_head else None)
    return Segmenter(encoder, decoder, head_module, aux_module, aux_stride, align_corners)
