"""The DeepLab family's decoders and the registered DeepLab models.

- "largefov" (DeepLab v1, Chen et al. 2015, arXiv:1412.7062): fc6 as a 3x3
  convolution with dilation 12 and 1024 channels, fc7 1x1 1024, each with
  ReLU and dropout 0.5; a 1x1 head (fc8) gives the classes.
- "aspp_l" (DeepLab v2, Chen et al. 2017, arXiv:1606.00915): four parallel 3x3
  convolutions with dilation 6, 12, 18, 24 straight to class scores, summed
  (ASPP-L); pair it with the "identity" head.
- "deeplabv3" (Chen et al. 2017, arXiv:1706.05587): ASPP with a 1x1 branch,
  three 3x3 branches (rates 6, 12, 18 at output stride 16, doubled at 8) and
  an image-pooling branch, each conv + BN + ReLU with 256 channels,
  concatenated and projected by a 1x1 conv + BN + ReLU, then dropout.
  `head_conv=True` adds the 3x3 conv + BN + ReLU that torchvision's and
  segmentation_models_pytorch's DeepLabHead put after ASPP.
- "deeplabv3plus" (Chen et al. 2018, arXiv:1802.02611): ASPP on the deepest
  feature, upsampled to the stride-4 low-level feature, which a 1x1 conv
  reduces to 48 channels; the concatenation goes through two 3x3 convs of 256
  channels. Options reproduce segmentation_models_pytorch's layout
  (`SMP_DEEPLABV3PLUS`: an extra separable 3x3 conv after ASPP, one decoder
  conv, upsampling with align_corners=True, separable convs without BN between
  the depthwise and pointwise parts) so its weights convert one to one.

Separable convolutions: `separable="tf"` is DeepLab's (depthwise, BN, ReLU,
pointwise, BN, ReLU, as `layers.SeparableConvNormAct(depthwise_act=True)`);
`separable="smp"` is smp's (depthwise, pointwise, BN, ReLU); None is a plain
3x3 conv + BN + ReLU.

Each decoder reads the deepest encoder feature (`max(features)`), so it sits
on any encoder that honours `output_stride`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.encoders.vgg import FC_PRESETS, FullyConv, VGG16
from segjax.models.registry import build_part, register
from segjax.models.segmenter import FCNHead, IdentityHead, SegmentationHead, Segmenter
from segjax.ops import pooling
from segjax.ops.resize import resize

SEPARABLE_STYLES = (None, "tf", "smp")


def rates_for(output_stride: int, rates_at_16: Sequence[int] = (6, 12, 18)) -> tuple[int, ...]:
    """ASPP rates for an output stride: the paper's rates at 16, doubled at 8."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"DeepLab: output_stride must be 8, 16 or 32, got {output_stride}")
    return tuple(int(r * 16 // output_stride) for r in rates_at_16)


class SmpSeparableConv(nn.Module):
    """Depthwise conv then pointwise conv, then BN + ReLU (smp's SeparableConv2d + BN + ReLU)."""

    features: int
    dilation: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        channels = x.shape[-1]
        x = layers.Conv(channels, 3, padding=self.dilation, dilation=self.dilation,
                        groups=channels, use_bias=False, dtype=self.dtype, name="depthwise")(x)
        return layers.ConvNormAct(self.features, 1, padding=0, dtype=self.dtype,
                                  name="pointwise")(x, train=train)


def conv3x3(x, features: int, dilation: int, separable: str | None, dtype, name: str, train):
    """A 3x3 (atrous) conv + BN + ReLU, plain or depthwise-separable."""
    if separable not in SEPARABLE_STYLES:
        raise ValueError(f"DeepLab: separable must be one of {SEPARABLE_STYLES}, "
                         f"got {separable!r}")
    if separable == "tf":
        return layers.SeparableConvNormAct(features, 3, padding=dilation, dilation=dilation,
                                           depthwise_act=True, dtype=dtype, name=name)(
            x, train=train)
    if separable == "smp":
        return SmpSeparableConv(features, dilation, dtype, name=name)(x, train=train)
    return layers.ConvNormAct(features, 3, padding=dilation, dilation=dilation, dtype=dtype,
                              name=name)(x, train=train)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabv3 (with image pooling)."""

    rates: Sequence[int] = (6, 12, 18)
    features: int = 256
    dropout: float = 0.5
    separable: str | None = None
    image_pooling: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        branches = [layers.ConvNormAct(self.features, 1, padding=0, dtype=self.dtype,
                                       name="conv1x1")(x, train=train)]
        for index, rate in enumerate(self.rates):
            branches.append(conv3x3(x, self.features, rate, self.separable, self.dtype,
                                    f"atrous{index}", train))
        if self.image_pooling:
            pooled = layers.ConvNormAct(self.features, 1, padding=0, dtype=self.dtype,
                                        name="pooling")(pooling.global_avg_pool(x), train=train)
            branches.append(jnp.broadcast_to(pooled, x.shape[:-1] + (self.features,)))
        x = layers.ConvNormAct(self.features, 1, padding=0, dtype=self.dtype,
                               name="project")(jnp.concatenate(branches, axis=-1), train=train)
        return nn.Dropout(self.dropout, deterministic=not train)(x)


@register("decoder", "largefov")
class LargeFOVDecoder(nn.Module):
    """DeepLab v1's fc6 (3x3, dilation 12, 1024) and fc7 (1x1, 1024) on the deepest feature."""

    dilation: int = 12
    features: int = 1024
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        preset = dict(FC_PRESETS["largefov"], dilation=self.dilation, padding=self.dilation,
                      features=self.features)
        return FullyConv(**preset, dropout=self.dropout, dtype=self.dtype, name="fc")(
            features[max(features)], train=train)


@register("decoder", "aspp_l")
class ASPPLDecoder(nn.Module):
    """DeepLab v2's ASPP-L: the sum of 3x3 atrous convs (rates 6, 12, 18, 24) to class scores."""

    num_classes: int
    rates: Sequence[int] = (6, 12, 18, 24)
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        del train
        x = features[max(features)]
        return sum(layers.Conv(self.num_classes, 3, padding=rate, dilation=rate, dtype=self.dtype,
                               kernel_init=nn.initializers.normal(0.01),
                               name=f"branch{index}")(x)
                   for index, rate in enumerate(self.rates))


@register("decoder", "deeplabv3")
class DeepLabV3Decoder(nn.Module):
    """ASPP on the deepest feature; `head_conv` adds torchvision's 3x3 conv after it."""

    rates: Sequence[int] = (6, 12, 18)
    features: int = 256
    dropout: float = 0.5
    separable: str | None = None
    head_conv: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        x = ASPP(tuple(self.rates), self.features, self.dropout, self.separable,
                 dtype=self.dtype, name="aspp")(features[max(features)], train=train)
        if self.head_conv:
            x = layers.ConvNormAct(self.features, 3, padding=1, dtype=self.dtype,
                                   name="head_conv")(x, train=train)
        return x


@register("decoder", "deeplabv3plus")
class DeepLabV3PlusDecoder(nn.Module):
    """ASPP + low-level (stride `low_level_stride`) feature fusion of DeepLabv3+."""

    rates: Sequence[int] = (6, 12, 18)
    features: int = 256
    low_level_stride: int = 4
    low_level_features: int = 48
    dropout: float = 0.5
    separable: str | None = "tf"
    aspp_separable: bool = True
    aspp_conv: bool = False
    decoder_convs: int = 2
    align_corners: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        if self.low_level_stride not in features:
            raise KeyError(f"deeplabv3plus decoder: low_level_stride {self.low_level_stride} "
                           f"is not an encoder stride; encoder strides: {sorted(features)}")
        x = ASPP(tuple(self.rates), self.features, self.dropout,
                 self.separable if self.aspp_separable else None, dtype=self.dtype,
                 name="aspp")(features[max(features)], train=train)
        if self.aspp_conv:
            x = conv3x3(x, self.features, 1, self.separable, self.dtype, "aspp_conv", train)
        low = features[self.low_level_stride]
        x = resize(x, low.shape[1:-1], align_corners=self.align_corners)
        low = layers.ConvNormAct(self.low_level_features, 1, padding=0, dtype=self.dtype,
                                 name="low_level")(low, train=train)
        x = jnp.concatenate([x, low], axis=-1)
        for index in range(self.decoder_convs):
            x = conv3x3(x, self.features, 1, self.separable, self.dtype, f"fuse{index}", train)
        return x


# segmentation_models_pytorch's DeepLabV3Plus decoder (smp 0.6).
SMP_DEEPLABV3PLUS = dict(separable="smp", aspp_separable=True, aspp_conv=True, decoder_convs=1,
                         align_corners=True)
# The paper / TF reference (DeepLab's decoder with separable convs).
PAPER_DEEPLABV3PLUS = dict(separable="tf", aspp_separable=True, aspp_conv=False,
                           decoder_convs=2, align_corners=True)
DEEPLABV3PLUS_STYLES = {"smp": SMP_DEEPLABV3PLUS, "paper": PAPER_DEEPLABV3PLUS}


def _encoder(name: str, output_stride: int, **options) -> nn.Module:
    return build_part("encoder", {"name": name, "output_stride": output_stride, **options})


# ----------------------------------------------------------------------------- models

@register("model", "deeplabv1_largefov", input_shape=(1, 321, 321, 3),
          paper="Chen et al. 2015, DeepLab v1 (LargeFOV), arXiv:1412.7062")
def deeplabv1_largefov(num_classes: int = 21, dropout: float = 0.5, dtype=None) -> Segmenter:
    """VGG-16 at output stride 8 (3x3 poolings, conv5 dilation 2) + fc6/fc7 + 1x1 fc8."""
    encoder = VGG16(output_stride=8, dtype=dtype)
    decoder = LargeFOVDecoder(dropout=dropout, dtype=dtype)
    head = SegmentationHead(num_classes, 1, dtype=dtype)
    return Segmenter(encoder, decoder, head, align_corners=True)


@register("model", "deeplabv2_resnet101", input_shape=(1, 321, 321, 3),
          paper="Chen et al. 2017, DeepLab v2 (ResNet-101, ASPP-L), arXiv:1606.00915")
def deeplabv2_resnet101(num_classes: int = 21, output_stride: int = 8,
                        rates: Sequence[int] = (6, 12, 18, 24), dtype=None) -> Segmenter:
    encoder = _encoder("resnet101", output_stride, dtype=dtype)
    decoder = ASPPLDecoder(num_classes, tuple(rates), dtype=dtype)
    return Segmenter(encoder, decoder, IdentityHead(num_classes), align_corners=True)


def deeplabv3(encoder: str, num_classes: int = 21, output_stride: int = 16,
              multi_grid: Sequence[int] | None = (1, 2, 4), head_conv: bool = False,
              aux: bool = False, dtype=None) -> Segmenter:
    """DeepLabv3 on a ResNet (multi-grid (1, 2, 4) in the last stage, as the paper)."""
    options = {"multi_grid": tuple(multi_grid)} if multi_grid else {}
    decoder = DeepLabV3Decoder(rates_for(output_stride), head_conv=head_conv, dtype=dtype)
    return Segmenter(_encoder(encoder, output_stride, dtype=dtype, **options), decoder,
                     SegmentationHead(num_classes, 1, dtype=dtype),
                     FCNHead(num_classes, dtype=dtype) if aux else None,
                     16 if aux else None, align_corners=True)


_V3 = "Chen et al. 2017, DeepLabv3, arXiv:1706.05587"


@register("model", "deeplabv3_resnet50", paper=_V3 + " (ResNet-50)", input_shape=(1, 513, 513, 3))
def deeplabv3_resnet50(**options) -> Segmenter:
    return deeplabv3("resnet50", **options)


@register("model", "deeplabv3_resnet101", paper=_V3, input_shape=(1, 513, 513, 3))
def deeplabv3_resnet101(**options) -> Segmenter:
    return deeplabv3("resnet101", **options)


def deeplabv3plus(encoder: str, num_classes: int = 21, output_stride: int = 16,
                  style: str = "paper", encoder_options: dict | None = None,
                  dtype=None) -> Segmenter:
    """DeepLabv3+ on any encoder; `style` "paper" (DeepLab TF) or "smp"."""
    if style not in DEEPLABV3PLUS_STYLES:
        raise ValueError(f"deeplabv3plus: style must be one of {sorted(DEEPLABV3PLUS_STYLES)}, "
                         f"got {style!r}")
    decoder_options = DEEPLABV3PLUS_STYLES[style]
    # smp keeps rates (12, 24, 36) at every output stride.
    rates = (12, 24, 36) if style == "smp" else rates_for(output_stride)
    decoder = DeepLabV3PlusDecoder(rates, dtype=dtype, **decoder_options)
    if encoder_options is None and style == "smp" and encoder.startswith("resnet"):
        # smp dilates every conv of the dilated stage, the first block's included.
        encoder_options = {"multi_grid": (1, 1, 1)}
    return Segmenter(_encoder(encoder, output_stride, dtype=dtype, **(encoder_options or {})),
                     decoder, SegmentationHead(num_classes, 1, dtype=dtype),
                     align_corners=decoder_options["align_corners"])


_V3P = "Chen et al. 2018, DeepLabv3+, arXiv:1802.02611"


@register("model", "deeplabv3plus_resnet50", paper=_V3P + " (ResNet-50, smp layout)",
          input_shape=(1, 513, 513, 3))
def deeplabv3plus_resnet50(style: str = "smp", **options) -> Segmenter:
    return deeplabv3plus("resnet50", style=style, **options)


@register("model", "deeplabv3plus_resnet101", paper=_V3P + " (ResNet-101, smp layout)",
          input_shape=(1, 513, 513, 3))
def deeplabv3plus_resnet101(style: str = "smp", **options) -> Segmenter:
    return deeplabv3plus("resnet101", style=style, **options)


@register("model", "deeplabv3plus_xception65", paper=_V3P, input_shape=(1, 513, 513, 3))
def deeplabv3plus_xception65(style: str = "paper", **options) -> Segmenter:
    return deeplabv3plus("xception65", style=style, **options)


@register("model", "deeplabv3plus_mobilenetv2", paper=_V3P + " (MobileNetV2)",
          input_shape=(1, 513, 513, 3))
def deeplabv3plus_mobilenetv2(style: str = "paper", encoder_options: dict | None = None,
                              **options) -> Segmenter:
    """DeepLab's MobileNetV2 backbone ends at the 320-channel block (no 1280-channel conv)."""
    if encoder_options is None:
        encoder_options = {"include_last_conv": False}
    return deeplabv3plus("mobilenetv2", style=style, encoder_options=encoder_options, **options)
