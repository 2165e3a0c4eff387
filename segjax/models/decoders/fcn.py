"""Fully convolutional networks: FCN-32s, FCN-16s, FCN-8s (Long et al., arXiv:1411.4038).

The "fcn" decoder scores the deepest feature with a 1x1 convolution, then
for each skip (stride 16: pool4, stride 8: pool3) upsamples the coarse scores
2x with a transposed convolution initialised to bilinear interpolation, adds
the skip's own 1x1 scores and finally upsamples to stride 1 with a
transposed convolution of factor = the finest stride (kernel 2 x factor). The
score layers start at zero, as in the paper; the transposed convolutions have
no bias. The reference nets froze the upsampling (lr_mult 0); here they are
ordinary parameters (mask them in the optimiser to freeze them).

Alignment. The reference Caffe nets pad conv1_1 by 100 and use unpadded
transposed convolutions; every map is then larger than the one it is added
to and is cropped at the offset that aligns pixel centres (Caffe's crop
layer). Mapping a position back to input pixels through each layer
(a conv/pool of kernel k, stride s, padding p sends output u to input
s * u + (k - 1) / 2 - p; a transposed conv sends input u to s * u + (k - 1) / 2):
    pool4 = 16 * u - 91.5, pool3 = 8 * u - 95.5, fc7 = 32 * u + 12.5 input pixels;
    FCN-32s upscore: u - 19        -> final crop 19
    FCN-16s upscore2: 16 u - 11.5  -> pool4 crop 5, upscore16: u - 27 -> final crop 27
    FCN-8s upscore_pool4: 8 u - 23.5 -> pool3 crop 9, upscore8: u - 31 -> final crop 31.
`crop_offsets` gives the skip offsets (5, 9) and the `FCN` model crops the
final map at `final_offset`, so the output has the input's size and alignment.
With `crop_offsets=None` ("same" alignment, for padded encoders such as
ResNet or VGG with `input_padding=1`) the transposed convolutions are padded
to give exactly 2x (and factor x) the size, which is aligned with the finer
map's top-left pixel, and the coarse map is cropped to the skip's size.

The "at-once" reference (voc-fcn8s-atonce) scales pool4 by 0.01 and pool3 by
0.0001 before scoring: `skip_scales=(0.01, 0.0001)`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.encoders.vgg import VGG16
from segjax.models.registry import register
from segjax.ops.resize import resize

AT_ONCE_SKIP_SCALES = (0.01, 0.0001)
# Caffe crop offsets of the reference nets (VGG-16 with conv1_1 padded by 100).
CAFFE_SKIP_OFFSETS = (5, 9)
CAFFE_FINAL_OFFSETS = {32: 19, 16: 27, 8: 31}


def crop_at(x: jax.Array, offset: int, size: Sequence[int]) -> jax.Array:
    """The `size` window of the spatial axes starting at `offset` (Caffe's crop layer)."""
    for axis, target in enumerate(size, start=1):
        if x.shape[axis] < offset + target:
            raise ValueError(f"FCN crop: axis {axis} has {x.shape[axis]} pixels, needs offset "
                             f"{offset} + {target}; the input is too small for this alignment")
        x = jax.lax.slice_in_dim(x, offset, offset + target, axis=axis)
    return x


def upsample(x: jax.Array, factor: int, same: bool, dtype, name: str) -> jax.Array:
    """Transposed conv (kernel 2 x factor, stride factor) initialised to bilinear."""
    return layers.ConvTranspose(x.shape[-1], 2 * factor, factor,
                                padding=factor // 2 if same else 0, use_bias=False,
                                dtype=dtype, kernel_init=layers.bilinear_upsample_init,
                                name=name)(x)


def score(x: jax.Array, num_classes: int, dtype, name: str) -> jax.Array:
    return layers.Conv(num_classes, 1, padding=0, dtype=dtype,
                       kernel_init=nn.initializers.zeros, name=name)(x)


@register("decoder", "deepest")
class DeepestFeature(nn.Module):
    """No decoder: the deepest encoder feature as is (torchvision's FCN puts its head there)."""

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False) -> jax.Array:
        del train
        return features[max(features)]


@register("decoder", "fcn")
class FCNDecoder(nn.Module):
    """FCN skip fusion; returns stride-1 class scores (crop them at `final_offset`).

    `skip_strides` () gives FCN-32s, (16,) FCN-16s, (16, 8) FCN-8s.
    """

    num_classes: int
    skip_strides: Sequence[int] = (16, 8)
    skip_scales: Sequence[float] | None = None
    crop_offsets: Sequence[int] | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict, *, train: bool = False) -> jax.Array:
        del train
        skips = tuple(self.skip_strides)
        scales = tuple(self.skip_scales) if self.skip_scales is not None else (1.0,) * len(skips)
        if len(scales) != len(skips):
            raise ValueError(f"FCN decoder: skip_scales {scales} needs one scale per skip "
                             f"stride {skips}")
        same = self.crop_offsets is None
        if not same and len(self.crop_offsets) < len(skips):
            raise ValueError(f"FCN decoder: crop_offsets {tuple(self.crop_offsets)} needs one "
                             f"offset per skip stride {skips}")
        missing = [s for s in skips if s not in features]
        if missing:
            raise KeyError(f"FCN decoder: skip strides {missing} are not encoder strides "
                           f"{sorted(features)}")
        deepest = max(features)
        stride = deepest
        x = score(features[deepest], self.num_classes, self.dtype, "score_fr")
        for index, (skip, scale) in enumerate(zip(skips, scales)):
            if skip * 2 != stride:
                raise ValueError(f"FCN decoder: skip stride {skip} must be half the previous "
                                 f"stride {stride} (skip_strides={skips}, deepest={deepest})")
            if same and any(-(-m // 2) != n for m, n in zip(features[skip].shape[1:-1],
                                                              x.shape[1:-1])):
                raise ValueError(f"FCN decoder: the stride-{skip} feature "
                                 f"{features[skip].shape[1:-1]} is not twice the stride-{stride}"
                                 f" scores {x.shape[1:-1]}; use an encoder at output_stride 32")
            x = upsample(x, 2, same, self.dtype, f"upscore{skip}")
            skip_scores = score(features[skip] * scale, self.num_classes, self.dtype,
                                f"score{skip}")
            if same:
                x = crop_at(x, 0, skip_scores.shape[1:-1])
            else:
                skip_scores = crop_at(skip_scores, self.crop_offsets[index], x.shape[1:-1])
            x = x + skip_scores
            stride = skip
        return upsample(x, stride, same, self.dtype, "upscore_final")


class FCN(nn.Module):
    """Encoder + "fcn" decoder, output cropped at `final_offset` to the input's size.

    `final_offset=None` ("same" alignment) resizes the stride-1 scores to the
    input size instead, which is a no-op when the input is a multiple of the
    encoder's stride.
    """

    encoder: nn.Module
    decoder: nn.Module
    final_offset: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        spatial = x.shape[1:-1]
        scores = self.decoder(self.encoder(x, train=train), train=train)
        if self.final_offset is None:
            return {"logits": resize(scores, spatial)}
        return {"logits": crop_at(scores, self.final_offset, spatial)}


def build_fcn(skip_strides: Sequence[int], num_classes: int = 21, at_once: bool = False,
              caffe_alignment: bool = True, dropout: float = 0.5, dtype=None,
              encoder_options: dict | None = None) -> FCN:
    """An FCN on VGG-16 as the reference nets (Caffe alignment) or padded ("same");
    `encoder_options` go to `VGG16` (e.g. `widths`, `fc_features` for a narrow net)."""
    finest = min(skip_strides, default=32)
    encoder = VGG16(**{"fc": "fcn", "input_padding": 100 if caffe_alignment else 1,
                       "dropout": dropout, "dtype": dtype, **(encoder_options or {})})
    decoder = FCNDecoder(num_classes, tuple(skip_strides),
                         skip_scales=AT_ONCE_SKIP_SCALES[:len(skip_strides)] if at_once else None,
                         crop_offsets=CAFFE_SKIP_OFFSETS if caffe_alignment else None,
                         dtype=dtype)
    if not caffe_alignment:
        return FCN(encoder, decoder, None)
    return FCN(encoder, decoder, CAFFE_FINAL_OFFSETS[finest])


_PAPER = "Long, Shelhamer, Darrell 2015, FCN, arXiv:1411.4038"


@register("model", "fcn32s", paper=_PAPER, input_shape=(1, 500, 500, 3),
          test_input_shape=(1, 32, 32, 3))
def fcn32s(num_classes: int = 21, caffe_alignment: bool = True, dropout: float = 0.5,
           dtype=None, encoder_options: dict | None = None) -> FCN:
    return build_fcn((), num_classes, False, caffe_alignment, dropout, dtype, encoder_options)


@register("model", "fcn16s", paper=_PAPER, input_shape=(1, 500, 500, 3),
          test_input_shape=(1, 32, 32, 3))
def fcn16s(num_classes: int = 21, caffe_alignment: bool = True, dropout: float = 0.5,
           dtype=None, encoder_options: dict | None = None) -> FCN:
    return build_fcn((16,), num_classes, False, caffe_alignment, dropout, dtype, encoder_options)


@register("model", "fcn8s", paper=_PAPER, input_shape=(1, 500, 500, 3),
          test_input_shape=(1, 32, 32, 3))
def fcn8s(num_classes: int = 21, at_once: bool = False, caffe_alignment: bool = True,
          dropout: float = 0.5, dtype=None, encoder_options: dict | None = None) -> FCN:
    """FCN-8s; `at_once=True` scales pool4/pool3 by 0.01/0.0001 (voc-fcn8s-atonce)."""
    return build_fcn((16, 8), num_classes, at_once, caffe_alignment, dropout, dtype,
                     encoder_options)
