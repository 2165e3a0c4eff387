"""`Segmenter(encoder, decoder, head)`: the one composite model.

The encoder maps an image batch (N, H, W, C) or a volume batch (N, D, H, W, C)
to features keyed by stride ({4: ..., 8: ..., 16: ..., 32: ...}); the decoder
maps that dict to one feature map (or a dict with a "features" entry plus
named extra outputs such as "center"/"offset", or "aux_logits" as a list of
maps for deep supervision); the head maps features to
`num_classes` logits, which are resized to the input resolution. An optional
auxiliary head reads the encoder feature at `aux_stride` (deep supervision,
as in PSPNet and torchvision's FCN/DeepLabv3), or the decoder's output when
`aux_stride="decoder"` (DPT's auxiliary head).

The model's `__call__(x, *, train)` returns a dict with "logits" always and
"aux_logits" / decoder extras where they exist; the train loop reads names,
never positions. There are no hooks: a new architecture is a new encoder,
decoder or head module.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.registry import register
from segjax.ops.resize import resize


@register("head", "conv")
class SegmentationHead(nn.Module):
    """A `kernel_size` convolution (with bias) to `num_classes` logits.

    Initialised Glorot-uniform as segmentation_models_pytorch's heads are: the
    encoders' He fan-out init would start a 256-channel head at logits of
    std ~5 (initial cross-entropy ~6.5 for 11 classes instead of ~2.5).
    """

    num_classes: int
    kernel_size: int = 1
    dropout: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.dropout:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return layers.Conv(self.num_classes, self.kernel_size,
                           padding=self.kernel_size // 2, dtype=self.dtype,
                           kernel_init=nn.initializers.xavier_uniform(),
                           name="classifier")(x)


@register("head", "fcn")
class FCNHead(nn.Module):
    """torchvision's FCNHead: 3x3 conv (in/4 channels) + BN + ReLU + dropout + 1x1 conv."""

    num_classes: int
    channels: int | None = None
    dropout: float = 0.1
    dtype: Any = None
    classifier_init: Any = layers.kaiming_normal_fan_out  # torchvision's; DPT: Glorot

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        channels = self.channels or x.shape[-1] // 4
        x = layers.ConvNormAct(channels, 3, padding=1, dtype=self.dtype, name="block")(
            x, train=train)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return layers.Conv(self.num_classes, 1, padding=0, dtype=self.dtype,
                           kernel_init=self.classifier_init, name="classifier")(x)


@register("head", "identity")
class IdentityHead(nn.Module):
    """No head: for decoders that already output class scores (FCN, DeepLab v2's ASPP)."""

    num_classes: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if x.shape[-1] != self.num_classes:
            raise ValueError(f"identity head: the decoder gives {x.shape[-1]} channels, "
                             f"expected num_classes={self.num_classes} class scores")
        return x


class Segmenter(nn.Module):
    """Encoder -> decoder -> head, logits resized to the input's spatial size."""

    encoder: nn.Module
    decoder: nn.Module
    head: nn.Module
    aux_head: nn.Module | None = None
    aux_stride: int | str | None = None
    align_corners: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        spatial = x.shape[1:-1]
        features = self.encoder(x, train=train)
        decoded = self.decoder(features, train=train)
        extras = {}
        if isinstance(decoded, dict):
            extras = {k: v for k, v in decoded.items() if k != "features"}
            decoded = decoded["features"]
        logits = self.head(decoded, train=train)
        outputs = {"logits": resize(logits, spatial, align_corners=self.align_corners)}
        for name, value in extras.items():
            outputs[name] = self._resized(value, spatial)
        if self.aux_head is not None:
            if "aux_logits" in outputs:
                raise ValueError("Segmenter: the decoder returns aux_logits and an aux_head is "
                                 "set too; use one of them")
            if self.aux_stride != "decoder" and self.aux_stride not in features:
                raise KeyError(f"aux_stride {self.aux_stride} is not an encoder stride or "
                               f"'decoder'; encoder strides: {sorted(features)}")
            aux_input = decoded if self.aux_stride == "decoder" else features[self.aux_stride]
            aux = self.aux_head(aux_input, train=train)
            outputs["aux_logits"] = resize(aux, spatial, align_corners=self.align_corners)
        return outputs

    def _resized(self, value, spatial):
        """A decoder extra (one map, or a list of maps such as deep supervision's) at `spatial`."""
        if isinstance(value, (list, tuple)):
            return [self._resized(v, spatial) for v in value]
        return resize(value, spatial, align_corners=self.align_corners)


def count_params(variables) -> int:
    """Number of trainable parameters (the 'params' collection)."""
    params = variables.get("params", variables) if isinstance(variables, dict) else variables
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
