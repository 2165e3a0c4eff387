"""Shared modules: convolution, normalization, conv-norm-activation, dropout, drop path.

Every convolution in segjax goes through `Conv` / `ConvTranspose` here, which
call `segjax.ops.conv`, so the convolution's formulation is chosen in one
place. The spatial rank (2D or 3D) is read from the input, never copied:
`ConvNormAct(64, 3)` is a 3x3 conv on NHWC input and a 3x3x3 conv on NDHWC.
Plain array functions (resize, pooling, activations by name) are in
`segjax.ops`; this module holds the flax modules and their initialisers.

Conventions chosen for PyTorch weight parity:
- kernels are (*k, C_in / groups, C_out); PyTorch's OIHW maps by a transpose;
- batch norm uses PyTorch's defaults (momentum 0.1 -> flax momentum 0.9,
  epsilon 1e-5) and reads running statistics when `train` is False;
- `padding` accepts ints (symmetric, PyTorch style), (lo, hi) pairs, 'SAME'
  and 'VALID'.

Mixed precision and rematerialisation (`segjax.models.policy`) reach every
model through these layers: `Conv` computes in its input's dtype when it has
no `dtype` of its own and its output is named `CONV_OUTPUT` for the
'conv_outputs' remat policy.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from segjax.ops import activations
from segjax.ops import conv as conv_ops

Dtype = Any
# The name of every Conv / ConvTranspose output (jax.ad_checkpoint.checkpoint_name),
# which the 'conv_outputs' rematerialisation policy keeps.
CONV_OUTPUT = "segjax_conv_output"
Initializer = Callable[..., jax.Array]

# He (Kaiming) normal, fan-out, as torchvision initialises convolutions.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class Conv(nn.Module):
    """N-D channels-last convolution (the only one segjax models use)."""

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    groups: int = 1
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal_fan_out
    bias_init: Initializer = nn.initializers.zeros
    impl: str | None = None
    # Weight standardisation (Qiao et al. 2019, arXiv:1903.10520; BiT's StdConv): each output
    # channel's kernel is normalised to zero mean and unit variance with this epsilon.
    weight_standardization: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        rank = x.ndim - 2
        kernel_size = conv_ops.per_axis(self.kernel_size, rank, "kernel_size")
        in_features = x.shape[-1]
        if in_features % self.groups:
            raise ValueError(f"Conv: {in_features} input channels are not divisible by "
                             f"groups={self.groups}")
        kernel = self.param("kernel", self.kernel_init,
                            kernel_size + (in_features // self.groups, self.features),
                            self.param_dtype)
        if self.weight_standardization is not None:
            kernel = conv_ops.standardize_kernel(kernel, self.weight_standardization)
        dtype = self.dtype or x.dtype
        y = conv_ops.conv(x.astype(dtype), kernel.astype(dtype), strides=self.strides,
                          padding=self.padding, rhs_dilation=self.dilation,
                          feature_group_count=self.groups, impl=self.impl)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return checkpoint_name(y, CONV_OUTPUT)


class ConvTranspose(nn.Module):
    """Transposed convolution with PyTorch's `ConvTranspose{2,3}d` semantics."""

    features: int
    kernel_size: int | Sequence[int] = 2
    strides: int | Sequence[int] = 2
    padding: int | Sequence[int] = 0
    output_padding: int | Sequence[int] = 0
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = kaiming_normal_fan_out
    bias_init: Initializer = nn.initializers.zeros
    impl: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        rank = x.ndim - 2
        kernel_size = conv_ops.per_axis(self.kernel_size, rank, "kernel_size")
        kernel = self.param("kernel", self.kernel_init,
                            kernel_size + (x.shape[-1], self.features), self.param_dtype)
        dtype = self.dtype or x.dtype
        y = conv_ops.conv_transpose(x.astype(dtype), kernel.astype(dtype),
                                    strides=self.strides, padding=self.padding,
                                    output_padding=self.output_padding, impl=self.impl)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return checkpoint_name(y, CONV_OUTPUT)


def bilinear_upsample_init(key, shape, dtype=jnp.float32):
    """Kernel init making a ConvTranspose a bilinear upsampler per channel (FCN).

    `shape` is (*k, C_in, C_out); off-diagonal channel pairs are zero.
    """
    del key
    *kernel_size, in_features, out_features = shape
    weights = 1.0
    for axis, k in enumerate(kernel_size):
        factor = (k + 1) // 2
        center = factor - 1 if k % 2 == 1 else factor - 0.5
        filt = 1 - jnp.abs(jnp.arange(k) - center) / factor
        weights = weights * filt.reshape([-1 if a == axis else 1 for a in range(len(kernel_size))])
    eye = jnp.eye(in_features, out_features)
    return (weights[..., None, None] * eye).astype(dtype)


# ----------------------------------------------------------------------------- activations

class PReLU(nn.Module):
    """Parametric ReLU with one slope per channel (PyTorch init 0.25)."""

    init_slope: float = 0.25

    @nn.compact
    def __call__(self, x):
        slope = self.param("weight", nn.initializers.constant(self.init_slope), (x.shape[-1],))
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


# ----------------------------------------------------------------------------- normalization

class Norm(nn.Module):
    """Normalization by name: 'batch', 'group', 'instance', 'layer' or None."""

    kind: str | None = "batch"
    num_groups: int = 32
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    scale_init: Initializer = nn.initializers.ones

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.kind is None or self.kind == "none":
            return x
        if self.kind == "batch":
            return nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                                epsilon=self.epsilon, dtype=self.dtype,
                                scale_init=self.scale_init, name="bn")(x)
        if self.kind == "group":
            groups = math.gcd(self.num_groups, x.shape[-1])
            return nn.GroupNorm(num_groups=groups, epsilon=self.epsilon, dtype=self.dtype,
                                name="gn")(x)
        if self.kind == "instance":
            return nn.GroupNorm(num_groups=None, group_size=1, epsilon=self.epsilon,
                                dtype=self.dtype, name="in")(x)
        if self.kind == "layer":
            return nn.LayerNorm(epsilon=self.epsilon, dtype=self.dtype, name="ln")(x)
        raise ValueError(f"unknown norm {self.kind!r}; valid: 'batch', 'group', 'instance', "
                         "'layer', None")


class ConvNormAct(nn.Module):
    """Convolution, then normalization, then activation (2D or 3D by input rank).

    The convolution has a bias only when there is no normalization, unless
    `use_bias` says otherwise. `act='prelu'` learns a per-channel slope.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    groups: int = 1
    norm: str | None = "batch"
    act: str | Callable | None = "relu"
    use_bias: bool | None = None
    dtype: Dtype | None = None
    norm_epsilon: float = 1e-5
    num_groups: int = 32
    kernel_init: Initializer = kaiming_normal_fan_out
    norm_momentum: float = 0.9    # flax convention: PyTorch momentum m -> 1 - m

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        unnormalized = self.norm in (None, "none")
        use_bias = self.use_bias if self.use_bias is not None else unnormalized
        x = Conv(self.features, self.kernel_size, self.strides, self.padding, self.dilation,
                 self.groups, use_bias=use_bias, dtype=self.dtype,
                 kernel_init=self.kernel_init, name="conv")(x)
        x = Norm(self.norm, num_groups=self.num_groups, epsilon=self.norm_epsilon,
                 momentum=self.norm_momentum,
                 dtype=self.dtype, name="norm")(x, train=train)
        if self.act == "prelu":
            return PReLU(name="act")(x)
        if self.act == "relu" and unnormalized:
            return activations.stored_relu(x)
        return activations.activation(self.act)(x)


class SeparableConvNormAct(nn.Module):
    """Depthwise conv (+ norm, optional act) then pointwise conv + norm + act.

    The depthwise-separable convolution of Xception / DeepLabv3+ and MobileNet;
    `depthwise_act` applies the activation between the two convolutions.
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    dilation: int | Sequence[int] = 1
    norm: str | None = "batch"
    act: str | Callable | None = "relu"
    depthwise_act: bool = False
    dtype: Dtype | None = None
    norm_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        channels = x.shape[-1]
        x = ConvNormAct(channels, self.kernel_size, self.strides, self.padding, self.dilation,
                        groups=channels, norm=self.norm,
                        act=self.act if self.depthwise_act else None, dtype=self.dtype,
                        norm_epsilon=self.norm_epsilon, name="depthwise")(x, train=train)
        return ConvNormAct(self.features, 1, padding=0, norm=self.norm, act=self.act,
                           dtype=self.dtype, norm_epsilon=self.norm_epsilon,
                           name="pointwise")(x, train=train)


# ----------------------------------------------------------------------------- dropout

class ChannelDropout(nn.Module):
    """Drops whole channels while training (PyTorch's `Dropout2d` / `Dropout3d`)."""

    rate: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        spatial = tuple(range(1, x.ndim - 1))
        return nn.Dropout(self.rate, broadcast_dims=spatial, deterministic=not train)(x)


class DropPath(nn.Module):
    """Stochastic depth: drops whole residual branches per sample while training."""

    rate: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / keep, 0).astype(x.dtype)
