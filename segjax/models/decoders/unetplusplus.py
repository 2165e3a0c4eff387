"""UNet++ (Zhou et al. 2018, arXiv:1807.10165): nested dense skip pathways, deep supervision,
pruning; the decoder on any encoder, smp's `UnetPlusPlus` and the paper's own network.

Notation (the paper's). Rows i = 0..L run from the finest encoder feature
to the deepest; X^{i,0} is the encoder feature of row i and every other node
is

    X^{i,j} = H([U(X^{i+1,j-1}), X^{i,j-1}, ..., X^{i,1}, X^{i,0}])   for j >= 1, i + j <= L

with U an upsampling and H two 3x3 convolutions + BN + ReLU (the order of
the concatenation is smp's). The nodes on the diagonal i + j = L are the
U-Net decoder path; X^{0,1..L} are the top row, each the end of a UNet++ of
depth 1..L ("branches").

Layouts:
- smp (the "unetplusplus" decoder's defaults; `UnetPlusPlusDecoder` of
  segmentation_models_pytorch 0.6, so smp weights convert one to one,
  `segjax.convert.smp_unetplusplus`): U is nearest upsampling to the
  skip's size; the diagonal nodes have `decoder_channels` (deepest first),
  every other node the width of its row's encoder feature; the
  `decoder_channels` past the L diagonal nodes are blocks that upsample x2
  with no skip (smp's last block, stride 2 -> 1 on a stride-32 encoder).
  smp has neither deep supervision nor pruning.
- paper (`upsample="transpose"`, the registered "unetplusplus" model): U is a
  2x2 stride-2 transposed convolution to the node's width (the paper's Keras
  code, one per node), every node of row i has filters[i] channels (which is
  the smp rule with `decoder_channels` = the filters reversed) and there are
  no extra blocks.

Deep supervision and pruning (section 2 of the paper) need one classifier per
branch, so they need `num_classes`: the decoder then returns class scores
(pair it with the "identity" head). Branch j < L is a 1x1 convolution on
X^{0,j}; branch L runs X^{0,L} through the extra blocks and a
`head_kernel` convolution (smp's head is 3x3). With `deep_supervision`,
`logits` is the deepest computed branch and `aux_logits` the others
(`combine="last"`; with config.loss.aux_weight = 1 every branch is weighted
equally, as the paper trains), or `logits` is their mean and `aux_logits`
all of them (`combine="average"`, the paper's "accurate mode").
`prune_depth=d` is the paper's pruned UNet++ L^d ("fast mode"): only the
nodes with i + j <= d are built and run, the output is branch d, and the
variables are a subset of the full model's (same names), so a model trained
with deep supervision is evaluated pruned by dropping the rest.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models.decoders.unet import SMP_DECODER_CHANNELS, DecoderBlock
from segjax.models.encoders import accepts_option
from segjax.models.registry import build_part, register
from segjax.models.segmenter import IdentityHead, SegmentationHead, Segmenter
from segjax.models.unet import DoubleConv
from segjax.ops import pooling
from segjax.ops.resize import resize

COMBINE = ("last", "average")
PAPER_FILTERS = (32, 64, 128, 256, 512)


def node_name(i: int, j: int) -> str:
    return f"x{i}_{j}"


@register("decoder", "unetplusplus",
          paper="Zhou et al. 2018, UNet++, arXiv:1807.10165 (smp's UnetPlusPlus decoder)")
class UNetPlusPlusDecoder(nn.Module):
    """Nested dense skip pathways over a stride-keyed feature dict (module docstring)."""

    decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS
    upsample: str = "nearest"
    norm: str | None = "batch"
    depth: int | None = None
    num_classes: int | None = None
    deep_supervision: bool = False
    combine: str = "last"
    prune_depth: int | None = None
    head_kernel: int = 3
    branch_kernel: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, features: dict[int, jax.Array], *, train: bool = False):
        rows = [features[s] for s in sorted(features)]
        depth = self._depth(len(rows))
        last = self._last_column(depth)
        if len(rows) < last + 1:
            raise ValueError(f"unetplusplus decoder: depth {last} needs {last + 1} encoder "
                             f"features, the encoder gives {len(rows)} (strides "
                             f"{sorted(features)})")
        nodes = {(i, 0): rows[i] for i in range(last + 1)}
        for j in range(1, last + 1):
            for i in range(last + 1 - j):
                nodes[i, j] = self._node(nodes, i, j, depth, train)
        if self.num_classes is None:
            return self._extra_blocks(nodes[0, depth], depth, train)
        return self._branches(nodes, depth, last, train)

    def _depth(self, num_rows: int) -> int:
        depth = num_rows - 1 if self.depth is None else self.depth
        if depth < 1:
            raise ValueError(f"unetplusplus decoder: needs at least 2 encoder features (depth "
                             f">= 1), got depth {depth}")
        if len(self.decoder_channels) < depth:
            raise ValueError(f"unetplusplus decoder: decoder_channels "
                             f"{tuple(self.decoder_channels)} needs at least one width per "
                             f"diagonal node (depth {depth})")
        if self.combine not in COMBINE:
            raise ValueError(f"unetplusplus decoder: combine must be one of {COMBINE}, got "
                             f"{self.combine!r}")
        if self.num_classes is None and (self.deep_supervision or self.prune_depth):
            raise ValueError("unetplusplus decoder: deep_supervision and prune_depth need "
                             "num_classes (one classifier per branch X^{0,j}; pair the decoder "
                             "with the 'identity' head)")
        return depth

    def _last_column(self, depth: int) -> int:
        """The deepest branch computed: `prune_depth`, or the full depth."""
        if self.prune_depth is None:
            return depth
        if not 1 <= self.prune_depth <= depth:
            raise ValueError(f"unetplusplus decoder: prune_depth must be in 1..{depth}, got "
                             f"{self.prune_depth!r}")
        return self.prune_depth

    def _node(self, nodes, i: int, j: int, depth: int, train: bool):
        """X^{i,j} from U(X^{i+1,j-1}) and X^{i,j-1}, ..., X^{i,0}."""
        width = (self.decoder_channels[depth - 1 - i] if i + j == depth
                 else nodes[i, 0].shape[-1])
        skips = jnp.concatenate([nodes[i, k] for k in reversed(range(j))], axis=-1)
        return DecoderBlock(width, self.norm, self.dtype, self.upsample, name=node_name(i, j))(
            nodes[i + 1, j - 1], skips, skips.shape[1:-1], train=train)

    def _extra_blocks(self, x, depth: int, train: bool):
        """smp's blocks past the top row: x2 upsampling with no skip."""
        for index, width in enumerate(self.decoder_channels[depth:]):
            size = [2 * n for n in x.shape[1:-1]]
            x = DecoderBlock(width, self.norm, self.dtype, name=f"extra{index}")(
                x, None, size, train=train)
        return x

    def _branches(self, nodes, depth: int, last: int, train: bool):
        columns = range(1, last + 1) if self.deep_supervision else (last,)
        branches = [self._branch(nodes, j, depth, train) for j in columns]
        if len(branches) == 1:
            return branches[0]
        if self.combine == "last":
            return {"features": branches[-1], "aux_logits": branches[:-1]}
        size = max((b.shape[1:-1] for b in branches), key=math.prod)
        mean = sum(resize(b, size) for b in branches) / len(branches)
        return {"features": mean, "aux_logits": branches}

    def _branch(self, nodes, j: int, depth: int, train: bool):
        """Class scores of branch j: X^{0,j} (through the extra blocks when j = depth)."""
        x, kernel = nodes[0, j], self.branch_kernel
        if j == depth:
            x, kernel = self._extra_blocks(x, depth, train), self.head_kernel
        return SegmentationHead(self.num_classes, kernel, dtype=self.dtype,
                                name=f"branch{j}")(x, train=train)


def encoder_strides(encoder: nn.Module, channels: int = 3) -> list[int]:
    """The strides of `encoder`'s features, found abstractly (no weights, no compilation)."""
    x = jax.ShapeDtypeStruct((1, 64, 64, channels), jnp.float32)
    features, _ = jax.eval_shape(
        lambda v: encoder.init_with_output(jax.random.PRNGKey(0), v, train=False), x)
    return sorted(features)


def smp_unetplusplus(encoder: str = "resnet34", num_classes: int = 1,
                     decoder_channels: Sequence[int] = SMP_DECODER_CHANNELS,
                     deep_supervision: bool = False, combine: str = "last",
                     prune_depth: int | None = None, encoder_options: dict | None = None,
                     dtype: Any = None) -> Segmenter:
    """smp's `UnetPlusPlus(encoder, classes=num_classes)` on a registered encoder.

    With `deep_supervision` or `prune_depth` the decoder owns the branch
    classifiers (module docstring). A pruned model truncates encoders that
    take `max_stride` (ResNets) after the deepest row it uses, so their
    deeper stages are neither built nor run.
    """
    options = {"name": encoder, "dtype": dtype, **(encoder_options or {})}
    depth = None
    if prune_depth is not None:
        strides = encoder_strides(build_part("encoder", options))
        depth = len(strides) - 1
        if accepts_option(encoder, "max_stride") and 1 <= prune_depth <= depth:
            options["max_stride"] = strides[prune_depth]
    branches = deep_supervision or prune_depth is not None
    decoder = UNetPlusPlusDecoder(tuple(decoder_channels), depth=depth,
                                  num_classes=num_classes if branches else None,
                                  deep_supervision=deep_supervision, combine=combine,
                                  prune_depth=prune_depth, head_kernel=3, dtype=dtype)
    head = (IdentityHead(num_classes) if branches
            else SegmentationHead(num_classes, kernel_size=3, dtype=dtype))
    return Segmenter(build_part("encoder", options), decoder, head)


@register("model", "unetplusplus_resnet34",
          paper="smp UnetPlusPlus('resnet34'); Zhou et al. 2018, arXiv:1807.10165",
          input_shape=(1, 256, 256, 3))
def unetplusplus_resnet34(num_classes: int = 1, **options) -> Segmenter:
    """UNet++ on ResNet-34 in smp's layout (smp's default: 1 class); options of
    `smp_unetplusplus` (deep_supervision, combine, prune_depth, decoder_channels)."""
    return smp_unetplusplus("resnet34", num_classes, **options)


class NestedUNetEncoder(nn.Module):
    """The paper's X^{0,0}..X^{D,0}: two 3x3 conv (+ BN) + ReLU per row and 2x2 max
    pooling between rows, features keyed by stride 1, 2, ..., 2^D."""

    filters: Sequence[int] = PAPER_FILTERS
    norm: str | None = "batch"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        features = {}
        for i, width in enumerate(self.filters):
            if i:
                x = pooling.max_pool(x, 2)
            x = DoubleConv(width, "same", self.norm, self.norm in (None, "none"), self.dtype,
                           name=node_name(i, 0))(x, train=train)
            features[2 ** i] = x
        return features


@register("model", "unetplusplus",
          paper="Zhou et al. 2018, UNet++, arXiv:1807.10165 (the paper's network)",
          input_shape=(1, 96, 96, 1))
def unetplusplus(num_classes: int = 1, filters: Sequence[int] = PAPER_FILTERS,
                 norm: str | None = "batch", deep_supervision: bool = True,
                 combine: str = "last", prune_depth: int | None = None,
                 dtype: Any = None) -> Segmenter:
    """The paper's UNet++: rows of `filters` channels, 2x2 up-convolutions, a 1x1
    classifier per branch X^{0,1..4}, deep supervision on; `prune_depth` d builds
    and runs only the rows 0..d (the pruned UNet++ L^d). `norm=None` is the
    paper's Keras code (conv + bias + ReLU), whose parameter count is the paper's."""
    filters = tuple(filters)
    depth = len(filters) - 1
    rows = filters if prune_depth is None else filters[:max(prune_depth, 1) + 1]
    decoder = UNetPlusPlusDecoder(filters[-2::-1], upsample="transpose", norm=norm,
                                  depth=depth, num_classes=num_classes,
                                  deep_supervision=deep_supervision, combine=combine,
                                  prune_depth=prune_depth, head_kernel=1, dtype=dtype)
    return Segmenter(NestedUNetEncoder(rows, norm, dtype), decoder, IdentityHead(num_classes))
