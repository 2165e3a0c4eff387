"""Shared building blocks: convolution, conv-norm-activation, resize, drop path.

Every convolution in segjax goes through `Conv` / `ConvTranspose` here, which
call `segjax.ops.conv`, so the convolution's formulation is chosen in one
place. The spatial rank (2D or 3D) is read from the input, never copied:
`ConvNormAct(64, 3)` is a 3x3 conv on NHWC input and a 3x3x3 conv on NDHWC.

Conventions chosen for PyTorch weight parity:
- kernels are (*k, C_in / groups, C_out); PyTorch's OIHW maps by a transpose;
- batch norm uses PyTorch's defaults (momentum 0.1 -> flax momentum 0.9,
  epsilon 1e-5) and reads running statistics when `train` is False;
- `padding` accepts ints (symmetric, PyTorch style), (lo, hi) pairs, 'SAME'
  and 'VALID'.

Mixed precision and rematerialisation (`segjax.models.policy`) reach every
model through these layers: `Conv` computes in its input's dtype when it has
no `dtype` of its own, its output is named `CONV_OUTPUT` for the
'conv_outputs' remat policy, and `softmax` computes in float32.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from segjax.ops import conv as conv_ops

Dtype = Any
# The name of every Conv / ConvTranspose output (jax.ad_checkpoint.checkpoint_name),
# which the 'conv_outputs' rematerialisation policy keeps.
CONV_OUTPUT = "segjax_conv_output"
Initializer = Callable[..., jax.Array]

# He (Kaiming) normal, fan-out, as torchvision initialises convolutions.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _as_tuple(value, rank: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(value)
    if len(value) != rank:
        raise ValueError(f"expected {rank} values (one per spatial axis), got {value}")
    return value


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
        kernel_size = _as_tuple(self.kernel_size, rank)
        in_features = x.shape[-1]
        if in_features % self.groups:
            raise ValueError(f"Conv: {in_features} input channels are not divisible by "
                             f"groups={self.groups}")
        kernel = self.param("kernel", self.kernel_init,
                            kernel_size + (in_features // self.groups, self.features),
                            self.param_dtype)
        if self.weight_standardization is not None:
            kernel = standardize_kernel(kernel, self.weight_standardization)
        dtype = self.dtype or x.dtype
        y = conv_ops.conv(x.astype(dtype), kernel.astype(dtype), strides=self.strides,
                          padding=self.padding, rhs_dilation=self.dilation,
                          feature_group_count=self.groups, impl=self.impl)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return checkpoint_name(y, CONV_OUTPUT)


def standardize_kernel(kernel: jax.Array, epsilon: float) -> jax.Array:
    """(kernel - mean) / sqrt(var + epsilon) per output channel (the last axis)."""
    axes = tuple(range(kernel.ndim - 1))
    mean = jnp.mean(kernel, axis=axes, keepdims=True)
    var = jnp.var(kernel, axis=axes, keepdims=True)
    return (kernel - mean) * jax.lax.rsqrt(var + epsilon)


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
        kernel_size = _as_tuple(self.kernel_size, rank)
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

@jax.custom_jvp
def stored_relu(x):
    """max(x, 0), stored once: its derivative reads the output, and XLA cannot recompute it.

    For a convolution + bias + ReLU with no normalization (`ConvNormAct` with
    `norm=None`). `jax.nn.relu`'s derivative reads its input, the
    convolution's output plus bias, and XLA:CPU then keeps each raw
    convolution output alive until the backward pass, next to the activation
    that the next layer saves anyway (the paper U-Net: 262 MB of its train
    step's temporaries; docs/conv.md, decision 16). Here the
    derivative is taken from the output, and the output is divided by an
    exact elementwise 1 computed from `x`: XLA counts division as expensive and
    never duplicates it into another fusion, so the activation becomes a
    buffer of its own that the backward pass reads, and the raw convolution
    output dies in the forward pass. For finite `x` the result is bitwise
    `max(x, 0)`; NaN stays NaN. After a normalization the raw convolution
    output is kept for the normalization's own gradient, and storing the
    activation only adds a buffer (U-Net-ResNet34: +115 MB), so normalized
    layers keep `jax.nn.relu`.
    """
    return jnp.maximum(x, 0) / (1 + jnp.minimum(jnp.abs(x), 0))


@stored_relu.defjvp
def _stored_relu_jvp(primals, tangents):
    (x,), (tangent,) = primals, tangents
    y = stored_relu(x)
    return y, jnp.where(y > 0, tangent, jnp.zeros_like(tangent))


def hard_sigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def hard_swish(x):
    return x * hard_sigmoid(x)


_ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "hard_swish": hard_swish,
    "hard_sigmoid": hard_sigmoid,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "elu": jax.nn.elu,
}


def softmax(x: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax computed in float32 (attention under bfloat16), returned in x's dtype."""
    return jax.nn.softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)


def activation(name: str | Callable | None) -> Callable:
    """An activation function by name ('relu', 'gelu', 'hard_swish', ...)."""
    if name is None or name == "none" or name == "identity":
        return lambda x: x
    if callable(name):
        return name
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(_ACTIVATIONS))}, "
                         "'prelu' (learned, via ConvNormAct), None")
    return _ACTIVATIONS[name]


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
            return stored_relu(x)
        return activation(self.act)(x)


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


# ----------------------------------------------------------------------------- resize & crop

def _linear_align_corners(x: jax.Array, axis: int, size: int) -> jax.Array:
    """1-D linear interpolation along `axis` with align_corners=True sampling."""
    n = x.shape[axis]
    if n == size:
        return x
    if size == 1 or n == 1:
        return jnp.take(x, jnp.zeros((size,), jnp.int32), axis=axis)
    coords = jnp.arange(size, dtype=jnp.float32) * ((n - 1) / (size - 1))
    lo = jnp.clip(jnp.floor(coords).astype(jnp.int32), 0, n - 2)
    frac = (coords - lo).astype(x.dtype)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, lo + 1, axis=axis) * frac


def resize(x: jax.Array, size: Sequence[int], method: str = "bilinear",
           align_corners: bool = False) -> jax.Array:
    """Resizes the spatial axes of a channels-last batch to `size`.

    'bilinear' (also trilinear for 3D) with align_corners=False matches
    PyTorch's `F.interpolate(..., align_corners=False)` (half-pixel centres, no
    antialiasing); align_corners=True matches PyTorch's and TensorFlow 1's
    `align_corners=True`; 'nearest' matches PyTorch's 'nearest'.
    """
    spatial = tuple(x.shape[1:-1])
    size = tuple(int(s) for s in size)
    if len(size) != len(spatial):
        raise ValueError(f"resize: size {size} has {len(size)} axes, input has {len(spatial)}")
    if size == spatial:
        return x
    if method == "nearest":
        for axis, (n, m) in enumerate(zip(spatial, size), start=1):
            index = jnp.floor(jnp.arange(m) * (n / m)).astype(jnp.int32)
            x = jnp.take(x, jnp.minimum(index, n - 1), axis=axis)
        return x
    if method not in ("bilinear", "linear", "trilinear"):
        raise ValueError(f"resize: unknown method {method!r}; valid: 'bilinear', 'nearest'")
    if align_corners:
        for axis, m in enumerate(size, start=1):
            x = _linear_align_corners(x, axis, m)
        return x
    if all(m % n == 0 for n, m in zip(spatial, size)):
        for axis, (n, m) in enumerate(zip(spatial, size), start=1):
            x = _upsample_half_pixel(x, axis, m // n)
        return x
    shape = (x.shape[0],) + size + (x.shape[-1],)
    return jax.image.resize(x, shape, method="linear", antialias=False).astype(x.dtype)


def _upsample_half_pixel(x: jax.Array, axis: int, factor: int) -> jax.Array:
    """Linear upsampling by an integer factor along `axis`, half-pixel centres, edges clamped.

    Output pixel factor * i + r samples the input at i + t_r, t_r = (r + 0.5) / factor - 0.5,
    a fixed mix of x[i] and its neighbour (x[i - 1] for t_r < 0, x[i + 1] otherwise; the
    edge pixel repeats past the ends, as PyTorch clamps): elementwise work and an
    interleaving reshape, forward and backward. `jax.image.resize` computes the same
    values as dense (m x n) matmuls per axis: 1.6x slower alone for SegFormer's 4x
    upsampling of 150-class logits (batch 8, 64x64 -> 256x256; 4% of that model's
    gradient step), 2-6x for small maps.
    """
    if factor == 1:
        return x
    n = x.shape[axis]
    take = lambda start, stop: jax.lax.slice_in_dim(x, start, stop, axis=axis)
    previous = jnp.concatenate([take(0, 1), take(0, n - 1)], axis=axis)
    following = jnp.concatenate([take(1, n), take(n - 1, n)], axis=axis)
    phases = []
    for r in range(factor):
        t = (r + 0.5) / factor - 0.5
        phases.append((-t) * previous + (1 + t) * x if t < 0 else (1 - t) * x + t * following)
    y = jnp.stack(phases, axis=axis + 1).astype(x.dtype)
    return y.reshape(x.shape[:axis] + (n * factor,) + x.shape[axis + 1:])


def center_crop(x: jax.Array, size: Sequence[int], spatial_start: int = 1) -> jax.Array:
    """Crops the centre `size` of the spatial axes starting at `spatial_start`.

    Odd differences put the extra pixel at the end, as the U-Net paper's crop.
    """
    slices = [slice(None)] * x.ndim
    for offset, target in enumerate(size):
        axis = spatial_start + offset
        extra = x.shape[axis] - target
        if extra < 0:
            raise ValueError(f"center_crop: axis {axis} has {x.shape[axis]} < {target}")
        slices[axis] = slice(extra // 2, extra // 2 + target)
    return x[tuple(slices)]


def _pool_padding(padding, rank: int):
    return padding if isinstance(padding, str) else [(p, p) for p in _as_tuple(padding, rank)]


def max_pool(x: jax.Array, window: int = 2, strides: int | None = None, padding="VALID"):
    """Max pooling over all spatial axes (2D or 3D); int padding pads with -inf.

    Non-overlapping VALID pooling (window == strides, as U-Net's and VGG's 2x2/2)
    is a reshape and a max: its gradient is an elementwise compare, where
    `reduce_window`'s is an argmax window reduction that materialises three
    int32 index arrays of the input's size (on CPU, ~10% of the paper U-Net's
    train step and 90 MB of its peak temporaries). As in PyTorch, the gradient
    goes to the first maximum of each window (row-major); the backward pass
    keeps the input and output, which the network holds anyway, where JAX's
    own rule for `max` keeps a float mask of the input's size (the paper
    U-Net's train step: 1319 MB of temporaries instead of 1462).
    """
    rank = x.ndim - 2
    window, strides = _as_tuple(window, rank), _as_tuple(window if strides is None else strides,
                                                          rank)
    if window == strides and padding == "VALID":
        return _non_overlapping_max_pool(x, window)
    return nn.max_pool(x, window, strides, _pool_padding(padding, rank))


def _non_overlapping_max_pool(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    spatial = x.shape[1:-1]
    kept = tuple(n - n % k for n, k in zip(spatial, window))
    if kept != spatial:  # VALID drops the trailing rows that do not fill a window
        x = x[(slice(None),) + tuple(slice(0, n) for n in kept) + (slice(None),)]
    split = [x.shape[0]]
    for n, k in zip(kept, window):
        split += [n // k, k]
    return _window_max(x.reshape(split + [x.shape[-1]]))


def _window_axes(split: jax.Array) -> tuple[int, ...]:
    """The window axes of (N, n1, k1, n2, k2, ..., C)."""
    return tuple(range(2, split.ndim - 1, 2))


@jax.custom_vjp
def _window_max(split: jax.Array) -> jax.Array:
    """Max over the window axes of (N, n1, k1, n2, k2, ..., C) -> (N, n1, n2, ..., C)."""
    return jnp.max(split, axis=_window_axes(split))


def _window_max_forward(split):
    pooled = _window_max(split)
    return pooled, (split, pooled)


def _window_max_backward(residuals, d_pooled):
    split, pooled = residuals
    axes = _window_axes(split)
    taken = jnp.zeros(pooled.shape, bool)
    pieces = {}
    for offset in itertools.product(*(range(split.shape[a]) for a in axes)):
        index = [slice(None)] * split.ndim
        for axis, position in zip(axes, offset):
            index[axis] = position
        is_max = split[tuple(index)] == pooled
        pieces[offset] = jnp.where(is_max & ~taken, d_pooled, jnp.zeros_like(d_pooled))
        taken = taken | is_max
    return (_assemble_windows(pieces, tuple(split.shape[a] for a in axes)),)


def _assemble_windows(pieces: dict, window: tuple[int, ...], prefix: tuple[int, ...] = ()):
    """Stacks per-offset (N, n1, n2, ..., C) gradients back into the split layout."""
    depth = len(prefix)
    if depth == len(window):
        return pieces[prefix]
    parts = [_assemble_windows(pieces, window, prefix + (k,)) for k in range(window[depth])]
    return jnp.stack(parts, axis=2 + depth)


_window_max.defvjp(_window_max_forward, _window_max_backward)


def avg_pool(x: jax.Array, window: int = 2, strides: int | None = None, padding="VALID",
             count_include_pad: bool = False):
    """Average pooling over all spatial axes; by default padding is excluded from the
    count (`count_include_pad=True` is PyTorch's `AvgPool` default)."""
    rank = x.ndim - 2
    strides = window if strides is None else strides
    return nn.avg_pool(x, _as_tuple(window, rank), _as_tuple(strides, rank),
                       _pool_padding(padding, rank),
                       count_include_pad=count_include_pad)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over all spatial axes, keeping them as size-1 axes."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=True)


def adaptive_bins(size: int, bins: int) -> np.ndarray:
    """(bins, size) averaging matrix of PyTorch's adaptive average pooling along one axis.

    Bin k covers [floor(k * size / bins), ceil((k + 1) * size / bins)): bins
    overlap when `size` is not a multiple of `bins`, and a bin wider than
    the input repeats pixels, exactly as `nn.AdaptiveAvgPool2d`.
    """
    matrix = np.zeros((bins, size), np.float32)
    for k in range(bins):
        start, end = (k * size) // bins, -(-((k + 1) * size) // bins)
        matrix[k, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
    """PyTorch's `AdaptiveAvgPool{2,3}d` over the spatial axes of a channels-last batch.

    A bin is a box, so its mean is the product of one averaging matrix per
    axis (`adaptive_bins`), applied axis by axis as small matmuls.
    """
    rank = x.ndim - 2
    for axis, bins in enumerate(_as_tuple(output_size, rank), start=1):
        matrix = jnp.asarray(adaptive_bins(x.shape[axis], bins), x.dtype)
        x = jnp.moveaxis(jnp.tensordot(matrix, x, axes=[[1], [axis]],
                                       precision=jax.lax.Precision.HIGHEST), 0, axis)
    return x


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
