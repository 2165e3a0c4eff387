"""DPT's fusion decoder and the DPT models (Ranftl et al. 2021, arXiv:2103.13413).

The decoder ("dpt") reads the stride-keyed features of any encoder (DPT's
reassembled ViT, `segjax.models.encoders.vit`, in the paper):

1. a 3x3 convolution (no bias) takes each feature at `strides` to `features`
   (256) channels;
2. fusion, deepest first: block j adds a residual convolution unit (RCU) of
   the next shallower map to the running map (the map is resized to the
   running map's size when they differ), applies a second RCU, upsamples 2x
   (bilinear, align_corners=True) and projects with a 1x1 convolution. The
   deepest block has only the second RCU's input;
3. an RCU is pre-activation: ReLU, 3x3 conv, [BN], ReLU, 3x3 conv, [BN], plus
   the input. `batch_norm=True` is the segmentation models' choice (the
   official `DPTSegmentationModel`, transformers'
   `use_batch_norm_in_fusion_residual` in the ADE20K checkpoints); the
   convolutions then have no bias.

The output is at stride 2 (four 2x upsamplings from stride 32). The head
(`FCNHead`: 3x3 conv + BN + ReLU, dropout 0.1, 1x1 conv) gives the classes,
and `Segmenter` upsamples them to the input (align_corners=True, DPT's last
2x `Upsample`). With `aux=True` an auxiliary head of the same shape reads the
decoder output, as transformers' `DPTAuxiliaryHead` (weight 0.4 in its loss:
`config.loss.aux_weight`).

The deepest fusion block of the reference also holds a first RCU that it never
calls (the official code's `refinenet4.resConfUnit1`); it is created here at
initialisation and never applied, so checkpoints convert one to one and the
parameter counts equal the reference's.

Models (150 classes, the reference configurations: transformers'
`DPTConfig` as its conversion scripts set it for the ADE20K models, with
`use_batch_norm_in_fusion_residual=True` and the auxiliary head):
`dpt_vit_b16` (ViT-B/16, reassembled to 96/192/384/768 channels; 111,807,980
parameters), `dpt_vit_l16` (ViT-L/16, 256/512/1024/1024, the `Intel/dpt-large-ade`
configuration; 343,960,364) and `dpt_hybrid` (ResNet-50 + ViT-B/16,
256/512/768/768; 123,307,884).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.encoders.vit import VARIANTS, DPTViT
from segjax.models.registry import register
from segjax.models.segmenter import FCNHead, Segmenter
from segjax.ops.resize import resize


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: x + conv(relu(conv(relu(x)))), BN after each conv."""

    batch_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        y = x
        for index in (1, 2):
            y = layers.Conv(x.shape[-1], 3, padding=1, use_bias=not self.batch_norm,
                            dtype=self.dtype, name=f"conv{index}")(jax.nn.relu(y))
            if self.batch_norm:
                y = layers.Norm("batch", dtype=self.dtype, name=f"norm{index}")(y, train=train)
        return x + y


class FusionBlock(nn.Module):
    """running (+ RCU(skip)) -> RCU -> 2x bilinear (align_corners) -> 1x1 conv."""

    batch_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, running, skip, *, train: bool):
        first = ResidualConvUnit(self.batch_norm, self.dtype, name="residual1")
        if running is None:
            if self.is_initializing():
                first(skip, train=train)  # the reference's unused unit: variables only
            x = skip
        else:
            if skip.shape[1:-1] != running.shape[1:-1]:
                skip = resize(skip, running.shape[1:-1])
            x = running + first(skip, train=train)
        x = ResidualConvUnit(self.batch_norm, self.dtype, name="residual2")(x, train=train)
        x = resize(x, [2 * n for n in x.shape[1:-1]], align_corners=True)
        return layers.Conv(x.shape[-1], 1, padding=0, dtype=self.dtype, name="projection")(x)


@register("decoder", "dpt", paper="Ranftl et al. 2021, DPT fusion decoder, arXiv:2103.13413")
class DPTDecoder(nn.Module):
    """3x3 convs to `features` channels, then fusion blocks from the deepest stride up."""

    features: int = 256
    strides: Sequence[int] = (4, 8, 16, 32)
    batch_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False):
        missing = [stride for stride in self.strides if stride not in features]
        if missing:
            raise KeyError(f"dpt decoder: strides {missing} (of strides={tuple(self.strides)}) "
                           f"are not encoder strides; encoder strides: {sorted(features)}")
        maps = [layers.Conv(self.features, 3, padding=1, use_bias=False, dtype=self.dtype,
                            name=f"conv{index}")(features[stride])
                for index, stride in enumerate(sorted(self.strides))]
        running = None
        for index, skip in enumerate(reversed(maps)):
            running = FusionBlock(self.batch_norm, self.dtype, name=f"fusion{index}")(
                running, skip, train=train)
        return running


def dpt(variant: str, num_classes: int = 150, readout: str = "project", aux: bool = True,
        batch_norm: bool = True, image_size: int = 384, layer_norm_epsilon: float = 1e-6,
        dropout: float = 0.1, dtype: Any = None) -> Segmenter:
    """DPT with the `variant` encoder of `segjax.models.encoders.vit` ('b16', 'l16', 'hybrid')."""
    if variant == "hybrid" and readout != "project":
        raise ValueError(f"dpt_hybrid: readout must be 'project' (DPT-Hybrid's), got {readout!r}")
    encoder = DPTViT(**VARIANTS[variant], readout=readout, image_size=image_size,
                     layer_norm_epsilon=layer_norm_epsilon, dtype=dtype)
    decoder = DPTDecoder(batch_norm=batch_norm, dtype=dtype)
    # Glorot-initialised classifiers, as SegmentationHead's: the He fan-out init would start
    # a 256-channel head at logits of std ~5 (initial cross-entropy ~8 for 11 classes).
    head = lambda: FCNHead(num_classes, channels=decoder.features, dropout=dropout, dtype=dtype,
                           classifier_init=nn.initializers.xavier_uniform())
    return Segmenter(encoder, decoder, head(), head() if aux else None,
                     "decoder" if aux else None, align_corners=True)


def _register(name: str, variant: str, paper: str) -> None:
    def build(**options) -> Segmenter:
        return dpt(variant, **options)

    build.__name__ = build.__qualname__ = name
    register("model", name, paper=paper, input_shape=(1, 384, 384, 3))(build)


_PAPER = "Ranftl et al. 2021, DPT, arXiv:2103.13413"
_register("dpt_vit_b16", "b16", f"{_PAPER} (ViT-B/16)")
_register("dpt_vit_l16", "l16", f"{_PAPER} (ViT-L/16)")
_register("dpt_hybrid", "hybrid", f"{_PAPER} (ResNet-50 + ViT-B/16 hybrid)")
