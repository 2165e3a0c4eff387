"""CGNet: Context Guided Network (Wu, Tang, Zhang, Zhang 2018, arXiv:1811.08201).

A light network (about 0.5M parameters) built from Context Guided (CG)
blocks, trained from scratch in the paper. One registered model, "cgnet", at
the paper's M3N21 (3 blocks in stage 2, 21 in stage 3):

- Stage 1: three 3x3 conv + BN + PReLU (32 channels, the first with stride 2).
- Input injection: the image, average-pooled (3x3, stride 2, padding 1,
  padding counted as PyTorch's AvgPool2d does) once and twice, is
  concatenated to the inputs of stages 2 and 3 (at 1/2 and 1/4).
- Stages 2 (64 channels, f_sur dilation 2, f_glo reduction 8) and 3 (128
  channels, dilation 4, reduction 16), each a down-sampling CG block followed
  by M - 1 (N - 1) CG blocks. A CG block: a 1x1 conv + BN + PReLU to half the
  width (the reduction); f_loc, a 3x3 depthwise conv, and f_sur, a dilated
  3x3 depthwise conv, on it; f_joi, their concatenation + BN + PReLU; f_glo,
  a channel re-weighting by a two-layer bottleneck (width / reduction, ReLU,
  sigmoid) of the globally pooled joint feature; and the residual sum with the
  block's input. The down-sampling block replaces the 1x1 conv by a 3x3
  stride-2 conv + BN + PReLU to the full width, has no residual, and reduces
  f_joi's doubled width by a 1x1 conv before f_glo.
- Each stage's output is BN + PReLU of a concatenation: stage 1's output and
  the 1/2 image; stage 2's last block, its down-sampling block and the 1/4
  image; stage 3's down-sampling block and its last block (in that order).
- A 1x1 conv (no bias) to the classes at 1/8, bilinearly upsampled x8 to the
  input's size (align_corners=False).

The layout and every width follow the official code (wutianyiRosun/CGNet,
model/CGNet.py): batch norm epsilon 1e-3, no bias in any convolution, f_glo's
two fully connected layers with bias, optional dropout (a 2D, channel-wise
dropout of 0.1 before the classifier when `dropout` is set; the official
default has none). At 19 classes it has the official 496,306 parameters.
Module names follow the official ones (`level1_0`, `level2_down` for
`level2_0`, `level2_{i}` for `level2.{i}`, `b1`, `bn_prelu_2`, ...), so the
official checkpoints convert with `segjax.convert.cgnet`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import layers
from segjax.models.registry import register
from segjax.ops import pooling
from segjax.ops.resize import resize

BN_EPSILON = 1e-3


def conv_bn_prelu(features: int, kernel_size: int, name: str, strides: int = 1,
                  dtype: Any = None) -> layers.ConvNormAct:
    return layers.ConvNormAct(features, kernel_size, strides, padding=kernel_size // 2,
                              act="prelu", norm_epsilon=BN_EPSILON, dtype=dtype, name=name)


class BNPReLU(nn.Module):
    """Batch norm (epsilon 1e-3) + per-channel PReLU."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = layers.Norm("batch", epsilon=BN_EPSILON, dtype=self.dtype, name="bn")(x, train=train)
        return layers.PReLU(name="act")(x)


class GlobalContext(nn.Module):
    """f_glo: channels re-weighted by sigmoid(FC(ReLU(FC(global average))))."""

    reduction: int = 16
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        weights = jnp.mean(x, axis=(1, 2))
        weights = nn.Dense(channels // self.reduction, dtype=self.dtype, name="fc0")(weights)
        weights = nn.Dense(channels, dtype=self.dtype, name="fc1")(jax.nn.relu(weights))
        return x * jax.nn.sigmoid(weights)[:, None, None, :]


class ContextGuidedBlock(nn.Module):
    """A CG block (residual), or with `down` the stride-2 down-sampling CG block."""

    features: int
    dilation: int = 2
    reduction: int = 16
    down: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.down:
            y = conv_bn_prelu(self.features, 3, "reduce_input", strides=2, dtype=self.dtype)(
                x, train=train)
        else:
            y = conv_bn_prelu(self.features // 2, 1, "reduce_input", dtype=self.dtype)(
                x, train=train)
        width = y.shape[-1]
        local = layers.Conv(width, 3, padding=1, groups=width, use_bias=False, dtype=self.dtype,
                            name="f_loc")(y)
        surrounding = layers.Conv(width, 3, padding=self.dilation, dilation=self.dilation,
                                  groups=width, use_bias=False, dtype=self.dtype,
                                  name="f_sur")(y)
        joint = BNPReLU(self.dtype, name="f_joi")(
            jnp.concatenate([local, surrounding], axis=-1), train=train)
        if self.down:
            joint = layers.Conv(self.features, 1, padding=0, use_bias=False, dtype=self.dtype,
                                name="reduce_joint")(joint)
        y = GlobalContext(self.reduction, self.dtype, name="f_glo")(joint)
        return y if self.down else x + y


def inject(x):
    """The image down-sampled by 2 for input injection (PyTorch's AvgPool2d(3, 2, 1))."""
    return pooling.avg_pool(x, 3, 2, padding=1, count_include_pad=True)


@register("model", "cgnet", paper="Wu et al. 2018, CGNet (M3N21), arXiv:1811.08201",
          input_shape=(1, 1024, 2048, 3))
class CGNet(nn.Module):
    """CGNet-M{stage2_blocks}N{stage3_blocks}; the paper's Cityscapes model is M3N21."""

    num_classes: int = 19
    stage2_blocks: int = 3
    stage3_blocks: int = 21
    dropout: float = 0.0
    dtype: Any = None

    def stage(self, x, blocks: int, features: int, dilation: int, reduction: int, name: str,
              train: bool):
        """The down-sampling block's output and the stage's last block's output."""
        first = ContextGuidedBlock(features, dilation, reduction, down=True, dtype=self.dtype,
                                   name=f"{name}_down")(x, train=train)
        y = first
        for index in range(blocks - 1):
            y = ContextGuidedBlock(features, dilation, reduction, dtype=self.dtype,
                                   name=f"{name}_{index}")(y, train=train)
        return first, y

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> dict[str, jax.Array]:
        for field in ("stage2_blocks", "stage3_blocks"):
            if getattr(self, field) < 2:
                raise ValueError(f"cgnet: {field} must be at least 2 (a down-sampling block and "
                                 f"a CG block), got {getattr(self, field)!r}")
        size = x.shape[1:-1]
        half = inject(x)
        quarter = inject(half)
        y = x
        for index in range(3):
            y = conv_bn_prelu(32, 3, f"level1_{index}", strides=2 if index == 0 else 1,
                              dtype=self.dtype)(y, train=train)
        y = BNPReLU(self.dtype, name="b1")(jnp.concatenate([y, half.astype(y.dtype)], -1),
                                           train=train)
        first, y = self.stage(y, self.stage2_blocks, 64, 2, 8, "level2", train)
        y = BNPReLU(self.dtype, name="bn_prelu_2")(
            jnp.concatenate([y, first, quarter.astype(y.dtype)], -1), train=train)
        first, y = self.stage(y, self.stage3_blocks, 128, 4, 16, "level3", train)
        y = BNPReLU(self.dtype, name="bn_prelu_3")(jnp.concatenate([first, y], -1), train=train)
        if self.dropout:
            y = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(y)
        logits = layers.Conv(self.num_classes, 1, padding=0, use_bias=False, dtype=self.dtype,
                             name="classifier")(y)
        return {"logits": resize(logits, size)}
