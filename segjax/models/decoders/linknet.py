"""LinkNet (Chaurasia & Culurciello 2017, arXiv:1707.03718): smp's layout and the paper's network.

Two networks over the one decoder block, each registered:

- decoder "linknet", model `linknet_resnet34`: segmentation_models_pytorch
  0.6's `Linknet`, so smp weights convert one to one
  (`segjax.convert.smp_linknet`).
- decoder "linknet_paper", model `linknet_resnet18`: the paper's network
  (Table 1, Fig. 1-3), 11.5M parameters (Table 3).

The decoder block is the paper's (Fig. 3): 1x1 conv to a quarter of the input
width m, a "full-convolution" (transposed conv) of that width, 1x1 conv to the
output width n, each + BN + ReLU. Its output is added to an encoder feature
(the "link": no concatenation, so the decoder stays light).

smp's layout. Starting from the deepest encoder feature, each block's output
is added to the next shallower feature and has its width; blocks past the
shallowest feature have no link and keep their width, except the last, which
gives `prefinal_channels`. There is one block per x2 of the deepest stride
(5 on a stride-32 encoder), so the output is at the input's resolution and a
1x1 convolution gives the classes. Where smp departs from the paper: the
full-conv is 4x4 with padding 1 and a bias (before BN) instead of 3x3; the
stride-2 stem output is linked too; and the paper's final block is a fifth
decoder block to 32 channels and a 1x1 classifier.

The paper's network, as in the authors' Torch code (e-lab/LinkNet,
models/model.lua):
- Encoder: ResNet-18 (the registered `resnet18`). The initial block is its
  7x7 stride-2 conv + BN + ReLU and 3x3 stride-2 max pooling; encoder blocks
  1-4 are layer1-4 (64, 128, 256, 512 channels at strides 4, 8, 16, 32).
- Links: "the input of each encoder layer is also bypassed to the output of
  its corresponding decoder": decoder block 4 (m, n = 512, 256) + layer3's
  output (stride 16), block 3 (256, 128) + layer2's (stride 8), block 2
  (128, 64) + layer1's (stride 4), block 1 (64, 64) + the initial block's
  output (stride 4). The feature dict holds the initial block before its max
  pooling (ResNet's stride-2 feature), so the decoder applies that pooling
  (3x3, stride 2, padding 1; parameter-free) to link it. Links are at strides
  4, 8 and 16 only: none at stride 2 (smp's) or 32.
- Full-convs are 3x3 with padding 1, no bias (BN follows). Fig. 3 marks every
  block "/2", but ResNet-18's layer1 keeps the max pooling's resolution, so
  its decoder block 1 runs at stride 1 (the authors' `decode(64, 64, 1, 0)`);
  blocks 4..2 upsample x2 (32 -> 4).
- Final block: 3x3 full-conv stride 2 to 32 channels + BN + ReLU, 3x3 conv
  32 -> 32 + BN + ReLU, 2x2 full-conv stride 2 (with a bias) to the classes:
  x4, back at the input's resolution. The decoder returns class scores
  (identity head).
- Exact x2 from a 3x3 stride-2 full-conv: a transposed conv gives
  (H - 1) * s - 2p + k + output_padding, which for k = 3, s = 2, p = 1 is
  2H - 1; `output_padding` = s - k + 2p = 1 (Torch's `adjW/adjH` = 1, PyTorch's
  `output_padding=1`) adds the last row and column, so the output is exactly
  2H x 2W. `full_conv` derives it for any kernel: 0 for smp's 4x4 pad 1, for
  the 2x2 classifier and for stride 1.
- The authors' Torch code adds a ReLU after each link; both summands are
  already non-negative (ReLU outputs, or their max pooling), so it is the
  identity and is left out. Their convs before BN have biases (1,056
  parameters more in all; still 11.5M); here they have none, as every
  conv + BN in segjax.
Input sizes must be divisible by 32 (both layouts); the error says so.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax

from segjax.models import layers
from segjax.models.registry import build_part, register
from segjax.models.segmenter import IdentityHead, SegmentationHead, Segmenter
from segjax.ops import pooling

_PAPER = "Chaurasia & Culurciello 2017, LinkNet, arXiv:1707.03718"


def full_conv(features: int, kernel_size: int, strides: int, *, use_bias: bool,
              dtype: Any, name: str) -> layers.ConvTranspose:
    """A transposed conv whose output is exactly `strides` times its input's size:
    padding (k - 1) // 2 and output_padding s - k + 2 * padding."""
    padding = (kernel_size - 1) // 2
    return layers.ConvTranspose(features, kernel_size, strides, padding=padding,
                                output_padding=strides - kernel_size + 2 * padding,
                                use_bias=use_bias, dtype=dtype, name=name)


class LinknetBlock(nn.Module):
    """1x1 reduce to in/4, a `kernel_size` full-conv (stride `strides`), 1x1 expand;
    each + norm + ReLU. Defaults are smp's block (4x4, stride 2, with a bias)."""

    features: int
    norm: str | None = "batch"
    dtype: Any = None
    kernel_size: int = 4
    strides: int = 2
    up_bias: bool = True

    @nn.compact
    def __call__(self, x, *, train: bool):
        middle = x.shape[-1] // 4
        x = layers.ConvNormAct(middle, 1, padding=0, norm=self.norm, dtype=self.dtype,
                               name="reduce")(x, train=train)
        x = full_conv(middle, self.kernel_size, self.strides, use_bias=self.up_bias,
                      dtype=self.dtype, name="up")(x)
        x = jax.nn.relu(layers.Norm(self.norm, dtype=self.dtype, name="up_norm")(x, train=train))
        return layers.ConvNormAct(self.features, 1, padding=0, norm=self.norm, dtype=self.dtype,
                                  name="expand")(x, train=train)


def add_link(x: jax.Array, link: jax.Array, decoder: str, index: int, stride: int,
             deepest: int) -> jax.Array:
    """x + the encoder feature `link`, or an error naming the size the input needs."""
    if x.shape[1:-1] != link.shape[1:-1]:
        raise ValueError(f"{decoder} decoder: block {index} gives {x.shape[1:-1]}, the "
                         f"stride-{stride} feature is {link.shape[1:-1]}; the input's spatial "
                         f"size must be divisible by {deepest}")
    return x + link.astype(x.dtype)


@register("decoder", "linknet", paper=_PAPER)
class LinknetDecoder(nn.Module):
    """smp's Linknet decoder over a stride-keyed encoder feature dict."""

    prefinal_channels: int = 32
    num_blocks: int | None = None
    norm: str | None = "batch"
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        if not features:
            raise ValueError("linknet decoder: the encoder returned no features")
        strides = sorted(features, reverse=True)
        x = features[strides[0]]
        skips = [features[s] for s in strides[1:]]
        num_blocks = self.num_blocks or max(1, round(math.log2(strides[0])))
        for index in range(num_blocks):
            skip = skips[index] if index < len(skips) else None
            if skip is not None:
                width = skip.shape[-1]
            else:
                width = self.prefinal_channels if index == num_blocks - 1 else x.shape[-1]
            x = LinknetBlock(width, self.norm, self.dtype, name=f"block{index}")(x, train=train)
            if skip is not None:
                x = add_link(x, skip, "linknet", index, strides[index + 1], strides[0])
        return x


PAPER_STRIDES = (2, 4, 8, 16, 32)


@register("decoder", "linknet_paper", paper=_PAPER)
class LinknetPaperDecoder(nn.Module):
    """The paper's LinkNet decoder: blocks 4..1 with links, then the final block to
    `num_classes` scores at the input's resolution (see the module docstring)."""

    num_classes: int
    final_channels: int = 32
    norm: str | None = "batch"
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False) -> jax.Array:
        missing = [s for s in PAPER_STRIDES if s not in features]
        if missing:
            raise ValueError(f"linknet_paper decoder: needs encoder features at strides "
                             f"{PAPER_STRIDES} (the initial block before its max pooling, "
                             f"encoder blocks 1-4), missing {missing}; got {sorted(features)}")
        initial = pooling.max_pool(features[2], 3, 2, padding=1)
        # (link, its stride, block stride) for decoder blocks 4, 3, 2, 1.
        links = ((features[16], 16, 2), (features[8], 8, 2), (features[4], 4, 2), (initial, 4, 1))
        x = features[32]
        for number, (link, stride, up) in zip((4, 3, 2, 1), links):
            x = LinknetBlock(link.shape[-1], self.norm, self.dtype, kernel_size=3, strides=up,
                             up_bias=False, name=f"block{number}")(x, train=train)
            x = add_link(x, link, "linknet_paper", number, stride, 32)
        x = full_conv(self.final_channels, 3, 2, use_bias=False, dtype=self.dtype,
                      name="final_up")(x)
        x = jax.nn.relu(layers.Norm(self.norm, dtype=self.dtype, name="final_up_norm")(
            x, train=train))
        x = layers.ConvNormAct(self.final_channels, 3, padding=1, norm=self.norm,
                               dtype=self.dtype, name="final_conv")(x, train=train)
        return full_conv(self.num_classes, 2, 2, use_bias=True, dtype=self.dtype,
                         name="classifier")(x)


def smp_linknet(encoder: str = "resnet34", num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """smp's `Linknet(encoder, classes=num_classes)` on a registered encoder."""
    return Segmenter(build_part("encoder", {"name": encoder, "dtype": dtype}),
                     LinknetDecoder(dtype=dtype), SegmentationHead(num_classes, 1, dtype=dtype))


@register("model", "linknet_resnet34",
          paper="smp Linknet('resnet34'); Chaurasia & Culurciello 2017, arXiv:1707.03718",
          input_shape=(1, 256, 256, 3))
def linknet_resnet34(num_classes: int = 1, dtype: Any = None) -> Segmenter:
    """Linknet on ResNet-34 in smp's layout (smp's default: 1 class)."""
    return smp_linknet("resnet34", num_classes, dtype)


@register("model", "linknet_resnet18", paper=f"the paper's network; {_PAPER}",
          input_shape=(1, 512, 512, 3))
def linknet_resnet18(num_classes: int = 12, dtype: Any = None) -> Segmenter:
    """The paper's LinkNet: ResNet-18 encoder, the paper's decoder and final block.
    Default 12 classes: the authors' CamVid setup (11 classes + 'Unlabeled')."""
    return Segmenter(build_part("encoder", {"name": "resnet18", "dtype": dtype}),
                     LinknetPaperDecoder(num_classes, dtype=dtype),
                     IdentityHead(num_classes))
