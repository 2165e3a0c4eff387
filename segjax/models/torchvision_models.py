"""torchvision's segmentation models, laid out so their weights import one to one.

    tv_fcn_resnet50 / tv_fcn_resnet101           torchvision.models.segmentation.fcn_*
    tv_deeplabv3_resnet50 / tv_deeplabv3_resnet101 / tv_deeplabv3_mobilenet_v3_large

What torchvision builds, and how it maps here (`segjax.convert.segmentation`
converts the state dicts):
- ResNet backbones at output stride 8 (`replace_stride_with_dilation=[False,
  True, True]`); the main head reads layer4 (`features[32]`), the auxiliary
  FCNHead reads layer3 (`features[16]`).
- MobileNetV3-Large with `dilated=True` (output stride 16): the main head reads
  the last 960-channel conv (`features[32]`), the auxiliary head the first
  stride-8 block (features.4, 40 channels: `features[8]` with
  `tap_first_block=True`).
- FCN: `FCNHead(in, classes)`: 3x3 conv to in / 4 channels + BN + ReLU,
  dropout 0.1, 1x1 conv (the "fcn" head on the "deepest" decoder).
- DeepLabv3: `DeepLabHead`: ASPP with rates (12, 24, 36) and 256 channels,
  projection dropout 0.5, then a 3x3 conv + BN + ReLU and a 1x1 conv (the
  "deeplabv3" decoder with `head_conv=True` and the "conv" head).
- Logits are resized to the input with bilinear interpolation,
  align_corners=False; `aux_logits` likewise.
"""

from __future__ import annotations

from segjax.models.decoders.deeplab import DeepLabV3Decoder
from segjax.models.decoders.fcn import DeepestFeature
from segjax.models.registry import build_part, register
from segjax.models.segmenter import FCNHead, SegmentationHead, Segmenter

TORCHVISION_RATES = (12, 24, 36)
_FCN = "Long et al. 2015, FCN, arXiv:1411.4038 (torchvision's fcn_{})"
_V3 = "Chen et al. 2017, DeepLabv3, arXiv:1706.05587 (torchvision's deeplabv3_{})"


def _backbone(encoder: str, dtype):
    """The backbone at torchvision's output stride, and the stride its aux head reads."""
    if encoder.startswith("resnet"):
        return build_part("encoder", {"name": encoder, "output_stride": 8, "dtype": dtype}), 16
    return build_part("encoder", {"name": encoder, "output_stride": 16, "dtype": dtype,
                                  "tap_first_block": True}), 8


def tv_fcn(encoder: str, num_classes: int = 21, aux: bool = True, dtype=None) -> Segmenter:
    backbone, aux_stride = _backbone(encoder, dtype)
    return Segmenter(backbone, DeepestFeature(), FCNHead(num_classes, dtype=dtype),
                     FCNHead(num_classes, dtype=dtype) if aux else None,
                     aux_stride if aux else None)


def tv_deeplabv3(encoder: str, num_classes: int = 21, aux: bool = True,
                 dtype=None) -> Segmenter:
    backbone, aux_stride = _backbone(encoder, dtype)
    decoder = DeepLabV3Decoder(TORCHVISION_RATES, 256, dropout=0.5, head_conv=True, dtype=dtype)
    return Segmenter(backbone, decoder, SegmentationHead(num_classes, 1, dtype=dtype),
                     FCNHead(num_classes, dtype=dtype) if aux else None,
                     aux_stride if aux else None)


@register("model", "tv_fcn_resnet50", paper=_FCN.format("resnet50"),
          input_shape=(1, 520, 520, 3))
def tv_fcn_resnet50(**options) -> Segmenter:
    return tv_fcn("resnet50", **options)


@register("model", "tv_fcn_resnet101", paper=_FCN.format("resnet101"),
          input_shape=(1, 520, 520, 3))
def tv_fcn_resnet101(**options) -> Segmenter:
    return tv_fcn("resnet101", **options)


@register("model", "tv_deeplabv3_resnet50", paper=_V3.format("resnet50"),
          input_shape=(1, 520, 520, 3))
def tv_deeplabv3_resnet50(**options) -> Segmenter:
    return tv_deeplabv3("resnet50", **options)


@register("model", "tv_deeplabv3_resnet101", paper=_V3.format("resnet101"),
          input_shape=(1, 520, 520, 3))
def tv_deeplabv3_resnet101(**options) -> Segmenter:
    return tv_deeplabv3("resnet101", **options)


@register("model", "tv_deeplabv3_mobilenet_v3_large", paper=_V3.format("mobilenet_v3_large"),
          input_shape=(1, 520, 520, 3))
def tv_deeplabv3_mobilenet_v3_large(**options) -> Segmenter:
    return tv_deeplabv3("mobilenetv3_large", **options)
