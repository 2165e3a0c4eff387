"""Fully connected CRF (Krähenbühl & Koltun 2011) with mean-field inference, as DeepLab uses it.

The energy over labels x is sum_i U_i(x_i) + sum_{i,j} mu(x_i, x_j) k(f_i, f_j),
with unaries U = -log P from the network, Potts compatibility mu = [x_i != x_j]
and two Gaussian kernels:

- appearance (bilateral): bi_w * exp(-|p_i - p_j|^2 / 2 bi_xy_std^2 - |I_i - I_j|^2 / 2 bi_rgb_std^2)
- smoothness: pos_w * exp(-|p_i - p_j|^2 / 2 pos_xy_std^2)

Mean field iterates Q <- softmax(-U + sum_m w_m N_m K_m Q), where K_m Q is the
kernel's message (self included, as in every released implementation) and N_m
a normalisation: "after" (divide by K_m 1, the per-pixel normalisation of
Krähenbühl's original code that DeepLab v1/v2 ship) or "symmetric"
(N^(1/2) K N^(1/2), pydensecrf's default). Under Potts, adding w K Q to the
log-probability of the same label is the same update as subtracting it from
the others (the difference is constant per pixel).

Defaults are DeepLab v2's (ResNet-101, VOC): 10 iterations, bi_w 4,
bi_xy_std 67, bi_rgb_std 3, pos_w 3, pos_xy_std 1.

Two implementations share the mean-field loop:

- `dense_crf_exact`: explicit all-pairs kernels (N x N), the oracle for small images.
- `dense_crf`: the bilateral message through a permutohedral lattice (Adams,
  Baek, Davis 2010, the filter Krähenbühl's code uses), whose structure
  (splat vertices and barycentric weights, blur neighbours) is built once per
  image on the host in NumPy, so the iterations are gathers and segment sums
  compiled by XLA; the smoothness message is an exact separable Gaussian
  convolution on the pixel grid (truncated at 4 sigma), cheaper and more
  accurate than a lattice for a kernel over pixel positions only.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

NORMALIZATIONS = ("after", "symmetric")


@dataclasses.dataclass(frozen=True)
class CRFParams:
    """Mean-field iterations and kernel parameters (DeepLab v2's defaults)."""

    iterations: int = 10
    bi_w: float = 4.0
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    pos_w: float = 3.0
    pos_xy_std: float = 1.0
    normalization: str = "after"

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"CRF normalization must be one of {NORMALIZATIONS}, "
                             f"got {self.normalization!r}")
        for field in ("bi_xy_std", "bi_rgb_std", "pos_xy_std"):
            if getattr(self, field) <= 0:
                raise ValueError(f"CRF {field} must be positive, got {getattr(self, field)}")
        if self.iterations < 0:
            raise ValueError(f"CRF iterations must be >= 0, got {self.iterations}")


def params_from_config(config) -> CRFParams:
    """CRFParams from a mapping (e.g. config.eval.crf_params); missing fields keep defaults."""
    fields = dict(config.to_dict() if hasattr(config, "to_dict") else config or {})
    known = {f.name for f in dataclasses.fields(CRFParams)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"eval.crf_params has unknown field(s) {unknown}; valid: {sorted(known)}")
    return CRFParams(**fields)


def _check_inputs(image: np.ndarray, probs: np.ndarray) -> None:
    if image.ndim != 3 or probs.ndim != 3 or image.shape[:2] != probs.shape[:2]:
        raise ValueError(f"dense CRF needs an image (H, W, C) and probabilities (H, W, K) of "
                         f"the same size; got {image.shape} and {probs.shape}")


def _unary(probs: np.ndarray) -> jax.Array:
    return -jnp.log(jnp.clip(jnp.asarray(probs, jnp.float32), 1e-8, 1.0))


def bilateral_features(image: np.ndarray, params: CRFParams) -> np.ndarray:
    """(H*W, 2 + C) features: pixel position / bi_xy_std and colour / bi_rgb_std."""
    height, width = image.shape[:2]
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    positions = np.stack([yy, xx], -1).reshape(-1, 2) / params.bi_xy_std
    colours = np.asarray(image, np.float64).reshape(height * width, -1) / params.bi_rgb_std
    return np.concatenate([positions, colours], -1)


def _mean_field(unary: jax.Array, messages, weights, iterations: int) -> jax.Array:
    """Q <- softmax(-U + sum_m w_m message_m(Q)), starting from softmax(-U)."""

    def step(_, q):
        energy = -unary
        for weight, message in zip(weights, messages):
            energy = energy + weight * message(q)
        return jax.nn.softmax(energy, axis=-1)

    return jax.lax.fori_loop(0, iterations, step, jax.nn.softmax(-unary, axis=-1))


def _normalized(filter_fn, norm: jax.Array, normalization: str):
    """Wraps a linear filter with the chosen normalisation; `norm` = filter(1)."""
    if normalization == "after":
        return lambda q: filter_fn(q) / norm
    scale = jax.lax.rsqrt(norm)
    return lambda q: filter_fn(q * scale) * scale


# --------------------------------------------------------------------------- exact oracle


@functools.partial(jax.jit, static_argnames=("iterations", "normalization"))
def _exact_mean_field(unary, bilateral, positions, bi_w, pos_w, *, iterations, normalization):
    def gaussian(features):
        features = features - features.mean(0)      # less cancellation in |a|^2 + |b|^2 - 2ab
        sq = jnp.sum(features ** 2, -1)
        dist = sq[:, None] + sq[None, :] - 2 * features @ features.T
        return jnp.exp(-0.5 * jnp.maximum(dist, 0.0))

    kernels = (gaussian(bilateral), gaussian(positions))
    ones = jnp.ones((unary.shape[0], 1), unary.dtype)
    messages = []
    for kernel in kernels:
        matmul = functools.partial(jnp.matmul, kernel, precision=jax.lax.Precision.HIGHEST)
        messages.append(_normalized(matmul, matmul(ones), normalization))
    return _mean_field(unary, messages, (bi_w, pos_w), iterations)


def dense_crf_exact(image: np.ndarray, probs: np.ndarray,
                    params: CRFParams = CRFParams()) -> np.ndarray:
    """Mean-field marginals (H, W, K) with explicit all-pairs kernels; memory O((HW)^2)."""
    image, probs = np.asarray(image), np.asarray(probs)
    _check_inputs(image, probs)
    height, width, classes = probs.shape
    if height * width > 10000:
        raise ValueError(f"dense_crf_exact builds (HW)^2 kernels; {height}x{width} is too "
                         "large (at most 10000 pixels), use dense_crf")
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    positions = np.stack([yy, xx], -1).reshape(-1, 2) / params.pos_xy_std
    q = _exact_mean_field(_unary(probs).reshape(-1, classes),
                          jnp.asarray(bilateral_features(image, params), jnp.float32),
                          jnp.asarray(positions, jnp.float32), params.bi_w, params.pos_w,
                          iterations=params.iterations, normalization=params.normalization)
    return np.asarray(q).reshape(height, width, classes)


# --------------------------------------------------------------------------- permutohedral lattice


@dataclasses.dataclass(frozen=True)
class Lattice:
    """A permutohedral lattice over N points in d dimensions (arrays padded to buckets).

    vertices (N, d+1): lattice vertex of each point's enclosing simplex corner;
    barycentric (N, d+1): the point's weight on each; neighbours (d+1, V, 2): the
    two neighbours of every vertex along each lattice direction. Row V-1 (and
    any padding row) is an empty vertex that stays zero.
    """

    vertices: np.ndarray
    barycentric: np.ndarray
    neighbours: np.ndarray
    num_vertices: int

    @property
    def dim(self) -> int:
        return self.vertices.shape[1] - 1


def _bucket(count: int) -> int:
    """Rounds up to 1, 1.25, 1.5 or 1.75 x 2^k (>= 4096), so that images reuse few compiled shapes."""
    power = 2 ** max(12, int(math.floor(math.log2(max(count, 1)))))
    return next(power * m // 4 for m in (4, 5, 6, 7, 8) if power * m // 4 >= count)


def _encode(keys: np.ndarray, low: np.ndarray, radix: np.ndarray) -> np.ndarray:
    shifted = keys - low
    code = np.zeros(keys.shape[:-1], np.int64)
    for axis in range(keys.shape[-1]):
        code = code * radix[axis] + shifted[..., axis]
    return code


def build_lattice(features: np.ndarray) -> Lattice:
    """Splat structure and blur neighbours of the permutohedral lattice (NumPy, host).

    Follows Adams et al. (2010) as Krähenbühl's code does: features are scaled so
    that the lattice blur approximates a unit-variance Gaussian, elevated onto
    the plane x . 1 = 0 in d+1 dimensions, and each point is assigned the d+1
    vertices of its enclosing simplex with barycentric weights.
    """
    features = np.asarray(features, np.float64)
    count, dim = features.shape
    axis = np.arange(dim)
    scaled = features * (np.sqrt(2.0 / 3.0) * (dim + 1) / np.sqrt((axis + 2.0) * (axis + 1.0)))
    suffix = np.concatenate([np.cumsum(scaled[:, ::-1], 1)[:, ::-1], np.zeros((count, 1))], 1)
    elevated = np.empty((count, dim + 1))
    elevated[:, 0] = suffix[:, 0]
    elevated[:, 1:] = suffix[:, 1:] - (axis + 1) * scaled
    # The nearest remainder-0 lattice point, then the simplex (ranks) around it.
    rounded = np.round(elevated / (dim + 1))
    rem0 = (rounded * (dim + 1)).astype(np.int64)
    offset = rounded.sum(1).astype(np.int64)
    order = np.argsort(-(elevated - rem0), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(dim + 1), order.shape), axis=1)
    rank = rank + offset[:, None]
    below, above = rank < 0, rank > dim
    rank[below] += dim + 1
    rem0[below] += dim + 1
    rank[above] -= dim + 1
    rem0[above] -= dim + 1
    delta = (elevated - rem0) / (dim + 1)
    barycentric = np.zeros((count, dim + 2))
    rows = np.arange(count)[:, None]
    barycentric[rows, dim - rank] += delta
    barycentric[rows, dim - rank + 1] -= delta
    barycentric[:, 0] += 1.0 + barycentric[:, dim + 1]
    barycentric = barycentric[:, :dim + 1]
    # Vertex r of the simplex: rem0 + r, wrapped by d+1 where the rank says so.
    remainders = np.arange(dim + 1)[None, :, None]
    keys = rem0[:, None, :dim] + np.where(rank[:, None, :dim] <= dim - remainders,
                                          remainders, remainders - (dim + 1))
    low = keys.reshape(-1, dim).min(0) - (dim + 1)
    radix = keys.reshape(-1, dim).max(0) + (dim + 1) - low + 1
    if np.sum(np.log2(radix.astype(np.float64))) > 62:
        raise ValueError(f"permutohedral lattice keys span {radix.tolist()}: too wide to encode; "
                         "the features' scale (positions / xy_std, colours / rgb_std) is too large")
    codes, vertex_of = np.unique(_encode(keys, low, radix).reshape(-1), return_inverse=True)
    num_vertices = len(codes)
    # The code is linear in the key (mixed radix with margins), so a neighbour's
    # code is the vertex's code plus a constant per direction and side.
    place = np.cumprod(np.concatenate([radix[1:], [1]])[::-1])[::-1]
    padded_vertices = _bucket(num_vertices + 1)
    empty = padded_vertices - 1
    neighbours = np.full((dim + 1, padded_vertices, 2), empty, np.int32)
    for direction in range(dim + 1):
        for side, sign in enumerate((1, -1)):
            step = np.full(dim, sign, np.int64)
            if direction < dim:
                step[direction] = -sign * dim
            target = codes + int(np.dot(step, place))
            found = np.minimum(np.searchsorted(codes, target), num_vertices - 1)
            neighbours[direction, :num_vertices, side] = np.where(codes[found] == target,
                                                                  found, empty)
    return Lattice(vertex_of.reshape(count, dim + 1).astype(np.int32),
                   barycentric.astype(np.float32), neighbours, num_vertices)


def _lattice_filter(values: jax.Array, vertices, barycentric, neighbours) -> jax.Array:
    """Splat (N, K) values onto the lattice, blur along each direction, slice back.

    One scatter-add and one gather per simplex corner (rather than one over all
    corners at once): faster on CPU than the fused form (docs/inference.md).
    """
    corners = vertices.shape[1]
    lattice = jnp.zeros((neighbours.shape[1], values.shape[-1]), values.dtype)
    for corner in range(corners):
        lattice = lattice.at[vertices[:, corner]].add(values * barycentric[:, corner, None])
    for direction in range(neighbours.shape[0]):
        near = neighbours[direction]
        lattice = lattice + 0.5 * (lattice[near[:, 0]] + lattice[near[:, 1]])
    sliced = sum(barycentric[:, corner, None] * lattice[vertices[:, corner]]
                 for corner in range(corners))
    return sliced / (1.0 + 2.0 ** -(corners - 1))


def _gaussian_taps(std: float) -> np.ndarray:
    radius = max(1, int(math.ceil(4 * std)))
    offsets = np.arange(-radius, radius + 1)
    return np.exp(-0.5 * (offsets / std) ** 2).astype(np.float32)


def _separable_gaussian(values: jax.Array, taps: np.ndarray) -> jax.Array:
    """Zero-padded Gaussian filter of an (H, W, K) grid, one axis at a time."""
    radius = len(taps) // 2
    for axis in (0, 1):
        length = values.shape[axis]
        pad = [(0, 0)] * values.ndim
        pad[axis] = (radius, radius)
        padded = jnp.pad(values, pad)
        values = sum(float(tap) * jax.lax.slice_in_dim(padded, index, index + length, axis=axis)
                     for index, tap in enumerate(taps))
    return values


@functools.partial(jax.jit, static_argnames=("taps", "iterations", "normalization"))
def _lattice_mean_field(unary, vertices, barycentric, neighbours, bi_w, pos_w, *, taps,
                        iterations, normalization):
    height, width, classes = unary.shape
    taps = np.asarray(taps, np.float32)
    flat = lambda q: q.reshape(height, width, -1)

    def bilateral(q):
        return _lattice_filter(q.reshape(height * width, -1), vertices, barycentric,
                               neighbours).reshape(height, width, -1)

    def smoothness(q):
        return _separable_gaussian(flat(q), taps)

    ones = jnp.ones((height, width, 1), unary.dtype)
    messages = [_normalized(bilateral, bilateral(ones), normalization),
                _normalized(smoothness, smoothness(ones), normalization)]
    return _mean_field(unary, messages, (bi_w, pos_w), iterations)


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams(),
              lattice: Lattice | None = None) -> np.ndarray:
    """Mean-field marginals (H, W, K) of the dense CRF for an image (H, W, C) and probs (H, W, K).

    `image` is in the units bi_rgb_std refers to (uint8 RGB for DeepLab's
    parameters); `probs` are the network's class probabilities.
    """
    image, probs = np.asarray(image), np.asarray(probs)
    _check_inputs(image, probs)
    lattice = lattice or build_lattice(bilateral_features(image, params))
    q = _lattice_mean_field(_unary(probs), lattice.vertices, lattice.barycentric,
                            lattice.neighbours, params.bi_w, params.pos_w,
                            taps=tuple(_gaussian_taps(params.pos_xy_std).tolist()),
                            iterations=params.iterations, normalization=params.normalization)
    return np.asarray(q)


def lattice_filter(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The lattice's approximation of sum_j exp(-|f_i - f_j|^2 / 2) values_j (for tests)."""
    lattice = build_lattice(features)
    return np.asarray(jax.jit(_lattice_filter)(jnp.asarray(values, jnp.float32),
                                               lattice.vertices, lattice.barycentric,
                                               lattice.neighbours))
