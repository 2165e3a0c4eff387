"""SegFormer's all-MLP decoder and the SegFormer-B0..B5 models (Xie et al. 2021, arXiv:2105.15203).

The decoder ("segformer"): each encoder feature at `strides` (4, 8, 16, 32)
goes through its own linear layer to `features` channels and is resized
(bilinear, half-pixel centres) to the shallowest one's resolution; the maps
are concatenated deepest first, fused by a 1x1 convolution (no bias) + batch
norm + ReLU. The head (`segjax.models.segmenter.SegmentationHead`) applies
dropout 0.1 and a 1x1 convolution to the classes; `Segmenter` resizes the
stride-4 logits to the input.

It is computed in an equal, cheaper order (`FusedProjections`): resizing is
linear, so the 1x1 fuse convolution's block for each branch is multiplied
into that branch's projection and applied at the branch's own resolution,
and the upsampled results are summed; the 4F-channel concatenation at
stride 4 is never formed. The parameters are the paper's (and
transformers'), so weights convert one to one, and the forward costs about
half the FLOPs (XLA's count in docs/transformers.md).

It reads only the stride-keyed feature dict, so it works on any encoder that
returns those strides (MiT, ResNet, DPT's reassembled ViT ...).

Models `segformer_b0` .. `segformer_b5`: MiT-B0..B5 (`segjax.models.encoders.mit`)
+ this decoder with 256 channels (B0, B1) or 768 (B2-B5), as the paper's
ADE20K models. `style` picks between the layouts that publish weights:

    style    layer-norm eps   decoder channels   logits upsampled        dropout
    paper    1e-6             256 / 768          bilinear, half-pixel    0.1
    hf       1e-5             256 / 768          bilinear, half-pixel    0.1
    smp      1e-6             256                align_corners=True      0

"paper" is the official NVlabs/mmsegmentation network; "hf" is transformers'
`SegformerForSemanticSegmentation` (whose `SegformerModel` uses PyTorch's
1e-5 everywhere; its logits are at stride 4 and its loss upsamples them with
half-pixel centres, as `Segmenter` does); "smp" is
segmentation_models_pytorch's `Segformer` (256 channels for every encoder, a
x4 `UpsamplingBilinear2d`, i.e. align_corners=True, no dropout). Parameter
counts at 150 classes equal transformers' (3,752,694 for B0 ... 84,708,694
for B5; tests/models/test_segformer.py).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from segjax.models import layers, transformer
from segjax.models.encoders.mit import VARIANTS, MixTransformer
from segjax.models.registry import register
from segjax.models.segmenter import SegmentationHead, Segmenter
from segjax.ops.resize import resize


class LinearWeights(nn.Module):
    """A linear layer's kernel (and bias) under this module's name, returned unapplied."""

    shape: tuple[int, ...]
    use_bias: bool = True
    kernel_init: Any = transformer.trunc_normal_002

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", self.kernel_init, tuple(self.shape))
        bias = (self.param("bias", nn.initializers.zeros, (self.shape[-1],))
                if self.use_bias else None)
        return kernel, bias


class FusedProjections(nn.Module):
    """sum_j resize(x_j @ (P_j W_j)) + sum_j b_j W_j, then batch norm and ReLU.

    Equal to the paper's concat(resize(x_j @ P_j + b_j))[deepest first] @ W: resizing is
    linear and preserves constants, so each branch's 1x1 fuse block W_j applies before the
    upsampling, folded into its projection P_j. `fuse/conv` holds W as the (1, 1, n F, F)
    kernel of the paper's 1x1 convolution.
    """

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, branches, size, *, train: bool):
        count, width = len(branches), self.features
        fuse, _ = LinearWeights((1, 1, count * width, width), use_bias=False,
                                kernel_init=layers.kaiming_normal_fan_out, name="conv")()
        fuse = fuse.reshape(count * width, width)
        total, constant = 0.0, 0.0
        for position, (x, kernel, bias) in enumerate(reversed(branches)):  # deepest first
            block = fuse[position * width:(position + 1) * width]
            folded = kernel @ block
            if self.dtype is not None:
                x, folded = x.astype(self.dtype), folded.astype(self.dtype)
            total = total + resize(x @ folded, size)
            constant = constant + bias @ block
        y = total + constant.astype(total.dtype)
        y = layers.Norm("batch", dtype=self.dtype, name="norm")(y, train=train)
        return jax.nn.relu(y)


@register("decoder", "segformer", paper="Xie et al. 2021, SegFormer all-MLP decoder, "
                                        "arXiv:2105.15203")
class SegFormerDecoder(nn.Module):
    """Per-stride linear projections, resize to the shallowest stride, concat, 1x1 fuse
    (computed in the folded form of `FusedProjections`)."""

    features: int = 256
    strides: Sequence[int] = (4, 8, 16, 32)
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        missing = [stride for stride in self.strides if stride not in features]
        if missing:
            raise KeyError(f"segformer decoder: strides {missing} (of strides="
                           f"{tuple(self.strides)}) are not encoder strides; encoder strides: "
                           f"{sorted(features)}")
        strides = sorted(self.strides)
        size = features[strides[0]].shape[1:-1]
        branches = []
        for index, stride in enumerate(strides):
            x = features[stride]
            kernel, bias = LinearWeights((x.shape[-1], self.features), name=f"proj{index}")()
            branches.append((x, kernel, bias))
        return FusedProjections(self.features, self.dtype, name="fuse")(branches, size,
                                                                        train=train)


STYLES = {
    "paper": {"layer_norm_epsilon": 1e-6, "align_corners": False, "dropout": 0.1},
    "hf": {"layer_norm_epsilon": 1e-5, "align_corners": False, "dropout": 0.1},
    "smp": {"layer_norm_epsilon": 1e-6, "align_corners": True, "dropout": 0.0,
            "decoder_features": 256},
}


def segformer(variant: str, num_classes: int = 150, style: str = "paper",
              decoder_features: int | None = None, drop_path_rate: float = 0.1,
              dtype: Any = None) -> Segmenter:
    """SegFormer-`variant` (b0..b5) in one of `STYLES`' layouts."""
    if variant not in VARIANTS:
        raise ValueError(f"segformer: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if style not in STYLES:
        raise ValueError(f"segformer: style must be one of {sorted(STYLES)}, got {style!r}")
    options = STYLES[style]
    if decoder_features is None:
        decoder_features = options.get("decoder_features",
                                       256 if variant in ("b0", "b1") else 768)
    encoder = MixTransformer(**VARIANTS[variant], drop_path_rate=drop_path_rate,
                             layer_norm_epsilon=options["layer_norm_epsilon"], dtype=dtype)
    decoder = SegFormerDecoder(decoder_features, dtype=dtype)
    head = SegmentationHead(num_classes, 1, dropout=options["dropout"], dtype=dtype)
    return Segmenter(encoder, decoder, head, align_corners=options["align_corners"])


def _register(variant: str) -> None:
    def build(**options) -> Segmenter:
        return segformer(variant, **options)

    build.__name__ = build.__qualname__ = f"segformer_{variant}"
    build.__doc__ = f"SegFormer-{variant.upper()}: MiT-{variant.upper()} + the all-MLP decoder."
    register("model", f"segformer_{variant}", input_shape=(1, 512, 512, 3),
             paper=f"Xie et al. 2021, SegFormer-{variant.upper()}, arXiv:2105.15203")(build)


for _variant in VARIANTS:
    _register(_variant)
