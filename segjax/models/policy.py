"""How a model is applied: mixed precision and rematerialisation, for every model alike.

`ApplyPolicy.apply(model, variables, x, **apply_kwargs)` stands in for
`model.apply`; the train step and the predict function use it, so a model
needs no code of its own for either feature.

Mixed precision (`config.model.dtype`, 'float32' or 'bfloat16'). Parameters
and optimiser state stay float32 (the optimiser updates float32 masters). At
apply time the parameters and the input are cast to the compute dtype, so
every layer computes in it: segjax's `layers.Conv` follows its input's dtype,
flax's Dense/Conv promote their operands. What must stay float32 does:
flax's batch/group/layer norms compute their statistics in float32
(`force_float32_reductions`) and keep float32 running averages (the
`batch_stats` collection is never cast); the model's outputs are cast back to
float32 before the loss, whose softmax and sums run in float32
(`segjax.losses`); `segjax.ops.activations.softmax` is a float32 softmax for attention.
Gradients reach the float32 parameters through the cast (bfloat16 cotangents
cast up).

No loss scaling: bfloat16 has float32's 8-bit exponent (normal range
1.2e-38 .. 3.4e38), so gradients do not underflow as they do in float16
(5-bit exponent, smallest normal 6.1e-5), which is what loss scaling works
around; bfloat16 loses mantissa bits (8 instead of 24), which scaling cannot
restore. The float32 master weights keep small updates from vanishing.

Rematerialisation (`config.train.remat`, `config.train.remat_policy`).
Selected modules are recomputed in the backward pass from their inputs
instead of keeping their activations (`recompute`: jax.checkpoint's partial
evaluation, made to hold on XLA:CPU too). Selection is by the module tree,
found while the model runs (a `flax.linen.intercept_methods` interceptor),
not by model code:

    blocks   each composite module directly inside a part of a composite model
             (a Segmenter's encoder, decoder, head: a ResNet bottleneck, the
             ASPP), or directly inside the model when it has no parts (the
             paper U-Net's double convs); shared primitives (Conv, Norm, ...)
             are never blocks
    re:RE    every module whose whole path (e.g. 'encoder/layer3_1') matches RE

An encoder whose stages are modules (not ResNet, whose blocks sit directly in
the encoder) gets its stages as "blocks"; "re:encoder/layer[12]_\\d+" picks
the blocks of chosen ResNet stages. `remat_policy` says what a recomputed
module keeps: 'nothing' (only its inputs), 'conv_outputs' (the outputs of
`layers.Conv` / `ConvTranspose`, named `CONV_OUTPUT`, so only normalisation
and activations are recomputed), 'dots' (matrix-multiplication outputs
without batch dimensions, jax's `dots_with_no_batch_dims_saveable`).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import lift
from flax.linen import transforms as nn_transforms

from segjax import config as config_lib
from segjax.models import layers

CONV_OUTPUT = layers.CONV_OUTPUT
# Shared primitives: never a block (checkpointing one conv or norm saves nothing).
PRIMITIVES = (layers.Conv, layers.ConvTranspose, layers.Norm, layers.PReLU, layers.DropPath)


def remat_policy(name: str) -> Callable[..., bool] | None:
    """The jax.checkpoint policy called `name` (see the module docstring)."""
    if name == "nothing":
        return None
    if name == "conv_outputs":
        return jax.checkpoint_policies.save_only_these_names(CONV_OUTPUT)
    if name == "dots":
        return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    raise ValueError(f"config.train.remat_policy={name!r}: expected nothing, conv_outputs "
                     "or dots")


@dataclasses.dataclass(frozen=True)
class ApplyPolicy:
    """Compute dtype and rematerialisation of a model's application (module docstring)."""

    compute_dtype: str = "float32"
    remat: tuple[str, ...] = ()
    remat_policy: str = "nothing"

    @classmethod
    def from_config(cls, config) -> "ApplyPolicy":
        model = config.get("model") or {}
        train = config.get("train") or {}
        return cls(compute_dtype=str(model.get("dtype", "float32") or "float32"),
                   remat=config_lib.remat_levels(train.get("remat", "none")),
                   remat_policy=str(train.get("remat_policy", "nothing")))

    @property
    def mixed(self) -> bool:
        return jnp.dtype(self.compute_dtype) != jnp.float32

    def apply(self, model: nn.Module, variables: dict, x: jax.Array, *, remat: bool = True,
              **kwargs):
        """`model.apply(variables, x, **kwargs)` under this policy; outputs float32.

        `remat=False` skips rematerialisation (it only matters under a gradient).
        """
        if self.mixed:
            dtype = jnp.dtype(self.compute_dtype)
            variables = {**variables, "params": cast_floating(variables["params"], dtype)}
            x = x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
        if remat and self.remat:
            with nn.intercept_methods(_Rematerialiser(self.remat,
                                                      remat_policy(self.remat_policy))):
                result = model.apply(variables, x, **kwargs)
        else:
            result = model.apply(variables, x, **kwargs)
        if not self.mixed:
            return result
        if kwargs.get("mutable"):
            outputs, updates = result
            return cast_floating(outputs, jnp.float32), updates
        return cast_floating(result, jnp.float32)


def cast_floating(tree: Any, dtype) -> Any:
    """Every floating-point leaf of `tree` cast to `dtype` (integer leaves kept)."""
    def cast(leaf):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree_util.tree_map(cast, tree)


# ----------------------------------------------------------------------------- remat


def _root(module: nn.Module) -> nn.Module:
    while isinstance(module.parent, nn.Module):
        module = module.parent
    return module


def _part_names(root: nn.Module) -> set[str]:
    """The names of the modules `root` was given as attributes (a Segmenter's parts)."""
    if not dataclasses.is_dataclass(root):
        return set()
    return {field.name for field in dataclasses.fields(root)
            if field.name not in ("parent", "name")
            and isinstance(getattr(root, field.name, None), nn.Module)}


def _is_composite(module: nn.Module) -> bool:
    cls = type(module)
    return not (isinstance(module, PRIMITIVES) or cls.__module__.startswith("flax."))


def selected(levels: tuple[str, ...], module: nn.Module) -> bool:
    """Whether `module` (bound, inside a running model) is checkpointed under `levels`."""
    path = tuple(module.path)
    if not path:
        return False
    parts = _part_names(_root(module))
    for level in levels:
        if level.startswith("re:"):
            if re.fullmatch(level[3:], "/".join(path)):
                return True
        elif level == "blocks" and _is_composite(module):
            if (len(path) == 2 and path[0] in parts) or (len(path) == 1 and not parts):
                return True
    return False


class _Rematerialiser:
    """An interceptor running the selected modules' `__call__` under `recompute`.

    Array arguments become the checkpointed function's inputs; everything else
    (`train=True`, a dict's structure) is closed over as static. The call on
    the lifted module passes through this interceptor again; `_inside` lets it
    through unchanged.
    """

    _inside = threading.local()

    def __init__(self, levels: tuple[str, ...], policy):
        self.levels, self.policy = levels, policy

    def __call__(self, next_fun, args, kwargs, context):
        module = context.module
        active = getattr(self._inside, "paths", ())
        if (context.method_name != "__call__" or tuple(module.path) in active
                or not selected(self.levels, module)):
            return next_fun(*args, **kwargs)
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        dynamic = [i for i, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array,
                                                                              np.ndarray))]
        inside = self._inside

        def call(lifted, *arrays):
            values = list(leaves)
            for index, array in zip(dynamic, arrays):
                values[index] = array
            call_args, call_kwargs = jax.tree_util.tree_unflatten(treedef, values)
            inside.paths = active + (tuple(lifted.path),)
            try:
                return lifted(*call_args, **call_kwargs)
            finally:
                inside.paths = active

        return recompute(call, self.policy)(module, *[leaves[i] for i in dynamic])


# ----------------------------------------------------------------------------- recompute


def recompute(fn: Callable, policy=None) -> Callable:
    """`nn.checkpoint(fn, policy=policy)` that XLA:CPU cannot undo (for `fn(module, *arrays)`).

    `jax.checkpoint` keeps its recomputation apart from the forward pass with
    an optimisation barrier, which XLA:CPU removes before common-subexpression
    elimination: the recomputation is merged back into the forward pass (no
    saving) or, when it survives, scheduled early (more memory, not less).
    Here the backward pass runs `jax.checkpoint`'s own pullback, but on
    residuals to which an exact zero computed from the incoming cotangent is
    added: the recomputation then depends on the cotangent, so it can neither
    be merged with the forward pass nor run before its backward step, on any
    backend. The cost is one addition over each saved residual.
    """
    return nn_transforms.lift_transform(_recompute_core, fn, policy)


def _recompute_core(fn, policy):
    """The flax.core-level transform of `recompute` (as `flax.core.lift.checkpoint`)."""
    def inner(scope_fn, repack_fn, variable_groups, rng_groups, *args):
        def pure(variable_groups, rng_groups, *args):
            scope = scope_fn(variable_groups, rng_groups)
            return fn(scope, *args), repack_fn(scope)

        return recompute_in_backward(pure, policy)(variable_groups, rng_groups, *args)

    return lift.pack(inner, (True,), (True,), (True,), name="remat")


def recompute_in_backward(fn: Callable, policy=None) -> Callable:
    """`fn` whose backward pass recomputes what `policy` does not save, after its cotangent."""
    checkpointed = jax.checkpoint(fn, policy=policy, prevent_cse=False)

    @jax.custom_vjp
    def run(*inputs):
        return fn(*inputs)

    def forward(*inputs):
        return jax.vjp(checkpointed, *inputs)

    def backward(pullback, cotangent):
        zero = _zero_from(cotangent)
        return jax.tree_util.tree_map(lambda leaf: _plus(leaf, zero), pullback)(cotangent)

    run.defvjp(forward, backward)
    return run


def _zero_from(tree) -> jax.Array:
    """0 * (an element of the first floating leaf): an exact zero that depends on `tree`.

    XLA folds x * 0 to 0 only for integers (NaN * 0 is NaN), so this stays a
    data dependency.
    """
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.size:
            return jnp.ravel(leaf)[0].astype(jnp.float32) * 0
    return jnp.zeros((), jnp.float32)


def _plus(leaf, zero):
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
        return leaf + zero.astype(leaf.dtype)
    return leaf
