"""Vision Transformer encoders for dense prediction, as DPT builds them.

Papers: ViT (Dosovitskiy et al. 2020, arXiv:2010.11929) and DPT (Ranftl et al.
2021, arXiv:2103.13413). The layout follows transformers' `DPTModel` and its
`DPTReassembleStage` (itself a port of the official isl-org/DPT code), so
`DPTForSemanticSegmentation` weights convert one to one
(`segjax.convert.dpt`).

`VisionTransformer`: a class token and learned position embeddings (stored at
the pre-training grid, `image_size // patch_size`, and resized bilinearly,
half-pixel centres, to the grid of the input, so any input size works),
pre-norm blocks (multi-head self-attention through `segjax.ops.attention`,
an MLP with GELU), a final layer norm. It returns the tokens after the blocks
listed in `out_layers` (before the final norm, as DPT taps them) and the
final normalised tokens.

`DPTViT` (encoders `dpt_vit_b16`, `dpt_vit_l16`, `dpt_vit_hybrid`): a
ViT plus DPT's *reassemble* operation, which turns four token sets back into
an image-like pyramid at strides 4, 8, 16, 32:

1. Read: the class (readout) token is handled by `readout`: "ignore" drops
   it, "add" adds it to every other token, "project" concatenates it to every
   token and projects back to the width with a Dense layer and GELU.
2. Concatenate: tokens to a (h, w) map at stride 16.
3. Resample: a 1x1 convolution to `reassemble_features[i]` channels, then
   resizing by `reassemble_factors[i]`: a transposed convolution with kernel
   and stride f for f > 1 (`upsample`), nothing for f = 1, a 3x3 convolution
   with stride 1/f for f < 1 (`downsample`).

Putting reassembly in the encoder (the reference puts it in the "neck")
makes the ViT return the stride-keyed dict of every segjax encoder, so DPT's
fusion decoder, and any other decoder (U-Net, DeepLabv3+, SegFormer's MLP),
sits on it unchanged.

DPT-Hybrid (`dpt_vit_hybrid`): the tokens are a 1x1 projection of the stride-16
map of a BiT-style ResNet-50 with three stages of 3, 4 and 9 blocks
(`segjax.models.encoders.resnet` with `style="bit"`: weight-standardised
convolutions, group norm, 'SAME' padding; transformers' `BitBackbone`), and
the stride-4 and stride-8 features are that ResNet's first two stages,
unchanged (256 and 512 channels); the ViT's layers 9 and 12 are reassembled
to strides 16 and 32.

Layer-norm epsilon: the official DPT uses timm's ViT (1e-6, the default
here); transformers' `DPTConfig` uses 1e-12 (pass `layer_norm_epsilon=1e-12`
to reproduce it bit for bit).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers, transformer
from segjax.models.encoders.resnet import ResNet
from segjax.models.registry import register
from segjax.ops import activations
from segjax.ops.resize import resize

READOUTS = ("ignore", "add", "project")
TOKEN_STRIDE = 16

VARIANTS = {
    "b16": {"hidden_size": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072,
            "out_layers": (2, 5, 8, 11), "reassemble_features": (96, 192, 384, 768)},
    "l16": {"hidden_size": 1024, "depth": 24, "num_heads": 16, "mlp_dim": 4096,
            "out_layers": (5, 11, 17, 23), "reassemble_features": (256, 512, 1024, 1024)},
    "hybrid": {"hidden_size": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072,
               "out_layers": (8, 11), "reassemble_features": (768, 768),
               "reassemble_factors": (1, 0.5), "backbone": "resnet50_bit"},
}


class ViTBlock(nn.Module):
    """x + Attention(LayerNorm(x)); x + MLP(LayerNorm(x))."""

    num_heads: int
    mlp_dim: int
    layer_norm_epsilon: float = 1e-6
    drop_path: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool):
        norm = lambda name: transformer.layer_norm(self.layer_norm_epsilon, name, self.dtype)
        y = transformer.SelfAttention(self.num_heads, dtype=self.dtype,
                                      name="attention")(norm("norm1")(x))
        x = transformer.residual(x, y, self.drop_path, train=train, name="drop_path1")
        y = transformer.MLP(self.mlp_dim, dtype=self.dtype, name="mlp")(norm("norm2")(x))
        return transformer.residual(x, y, self.drop_path, train=train, name="drop_path2")


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class VisionTransformer(nn.Module):
    """Class token + resized position embeddings + blocks + final norm, on a token grid."""

    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    grid_size: int | Sequence[int] = 24       # the position embeddings' (pre-training) grid
    out_layers: Sequence[int] = (2, 5, 8, 11)
    layer_norm_epsilon: float = 1e-6
    drop_path_rate: float = 0.0
    dtype: Any = None

    def position_embeddings(self, height: int, width: int) -> jax.Array:
        grid = _pair(self.grid_size)
        table = self.param("position_embeddings", transformer.trunc_normal_002,
                           (1, 1 + grid[0] * grid[1], self.hidden_size))
        cls, patches = table[:, :1], table[:, 1:].reshape(1, *grid, self.hidden_size)
        patches = resize(patches, (height, width))
        return jnp.concatenate([cls, patches.reshape(1, height * width, -1)], axis=1)

    @nn.compact
    def __call__(self, grid: jax.Array, *, train: bool = False):
        """grid: (N, h, w, hidden_size) patch embeddings -> ([tokens after each of
        `out_layers`], final normalised tokens), tokens (N, 1 + h w, hidden_size)."""
        bad = [index for index in self.out_layers if not 0 <= index < self.depth]
        if bad:
            raise ValueError(f"VisionTransformer: out_layers {bad} are not block indices "
                             f"0..{self.depth - 1}")
        batch, height, width, _ = grid.shape
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.hidden_size))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.hidden_size)),
                                  grid.reshape(batch, height * width, -1)], axis=1)
        x = tokens + self.position_embeddings(height, width)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        rates = transformer.drop_path_rates(self.drop_path_rate, (self.depth,))[0]
        taps = {}
        for index in range(self.depth):
            x = ViTBlock(self.num_heads, self.mlp_dim, self.layer_norm_epsilon, rates[index],
                         self.dtype, name=f"block{index}")(x, train=train)
            taps[index] = x
        final = transformer.layer_norm(self.layer_norm_epsilon, "norm", self.dtype)(x)
        return [taps[index] for index in self.out_layers], final


class Reassemble(nn.Module):
    """DPT's Read (readout), Concatenate and Resample of one token set."""

    features: int
    factor: float
    readout: str = "project"
    dtype: Any = None

    @nn.compact
    def __call__(self, tokens: jax.Array, height: int, width: int):
        cls, patches = tokens[:, :1], tokens[:, 1:]
        if self.readout == "add":
            patches = patches + cls
        elif self.readout == "project":
            joined = jnp.concatenate([patches, jnp.broadcast_to(cls, patches.shape)], axis=-1)
            patches = activations.activation("gelu")(
                transformer.dense(tokens.shape[-1], "readout", dtype=self.dtype)(joined))
        x = patches.reshape(tokens.shape[0], height, width, tokens.shape[-1])
        x = layers.Conv(self.features, 1, padding=0, dtype=self.dtype, name="projection")(x)
        if self.factor > 1:
            return layers.ConvTranspose(self.features, int(self.factor), int(self.factor),
                                        padding=0, dtype=self.dtype, name="upsample")(x)
        if self.factor < 1:
            return layers.Conv(self.features, 3, round(1 / self.factor), padding=1,
                               dtype=self.dtype, name="downsample")(x)
        return x


class DPTViT(nn.Module):
    """ViT (or ResNet-50 + ViT) + DPT's reassembly: features at strides 4, 8, 16, 32."""

    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    image_size: int | Sequence[int] = 384
    out_layers: Sequence[int] = (2, 5, 8, 11)
    readout: str = "project"
    reassemble_features: Sequence[int] = (96, 192, 384, 768)
    reassemble_factors: Sequence[float] = (4, 2, 1, 0.5)
    backbone: str | None = None
    layer_norm_epsilon: float = 1e-6
    drop_path_rate: float = 0.0
    dtype: Any = None

    def _check(self) -> None:
        if self.readout not in READOUTS:
            raise ValueError(f"DPTViT: readout must be one of {READOUTS}, got {self.readout!r}")
        if self.backbone not in (None, "resnet50_bit"):
            raise ValueError(f"DPTViT: backbone must be None (patches) or 'resnet50_bit' "
                             f"(DPT-Hybrid), got {self.backbone!r}")
        if not len(self.out_layers) == len(self.reassemble_features) \
                == len(self.reassemble_factors):
            raise ValueError(
                f"DPTViT: out_layers {tuple(self.out_layers)}, reassemble_features "
                f"{tuple(self.reassemble_features)} and reassemble_factors "
                f"{tuple(self.reassemble_factors)} need one entry per reassembled feature")

    def embed(self, x, *, train: bool) -> tuple[jax.Array, dict[int, jax.Array]]:
        """The token grid (N, h, w, hidden_size) and the backbone's features kept as they are."""
        if self.backbone is None:
            grid = layers.Conv(self.hidden_size, self.patch_size, self.patch_size,
                               padding="VALID", dtype=self.dtype,
                               kernel_init=transformer.trunc_normal_002, name="patch_embed")(x)
            return grid, {}
        features = ResNet(50, style="bit", stage_sizes=(3, 4, 9), dtype=self.dtype,
                          name="backbone")(x, train=train)
        grid = layers.Conv(self.hidden_size, 1, padding=0, dtype=self.dtype,
                           kernel_init=transformer.trunc_normal_002,
                           name="patch_embed")(features[TOKEN_STRIDE])
        return grid, {4: features[4], 8: features[8]}

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[int, jax.Array]:
        self._check()
        grid, features = self.embed(x, train=train)
        token_stride = self.patch_size if self.backbone is None else TOKEN_STRIDE
        image = _pair(self.image_size)
        vit = VisionTransformer(self.hidden_size, self.depth, self.num_heads, self.mlp_dim,
                                (image[0] // token_stride, image[1] // token_stride),
                                tuple(self.out_layers), self.layer_norm_epsilon,
                                self.drop_path_rate, self.dtype, name="vit")
        taps, _ = vit(grid, train=train)
        height, width = grid.shape[1:3]
        first = len(features)  # the hybrid's backbone fills the first stages
        for offset, (tokens, width_out, factor) in enumerate(zip(
                taps, self.reassemble_features, self.reassemble_factors)):
            index = first + offset
            stride = round(token_stride / factor)
            if stride in features:
                raise ValueError(f"DPTViT: reassemble_factors {tuple(self.reassemble_factors)} "
                                 f"give stride {stride} twice")
            features[stride] = Reassemble(width_out, factor, self.readout, self.dtype,
                                          name=f"reassemble{index}")(tokens, height, width)
        return features


_DPT = "Ranftl et al. 2021, DPT, arXiv:2103.13413"
_PAPERS = {"b16": f"{_DPT} (ViT-B/16, Dosovitskiy et al. 2020, arXiv:2010.11929)",
           "l16": f"{_DPT} (ViT-L/16, Dosovitskiy et al. 2020, arXiv:2010.11929)",
           "hybrid": f"{_DPT} (ResNet-50 + ViT-B/16 hybrid)"}

for _variant, _shape in VARIANTS.items():
    register("encoder", f"dpt_vit_{_variant}", paper=_PAPERS[_variant], **_shape)(DPTViT)
