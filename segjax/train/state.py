"""The train state and its creation, laid out on the mesh from the start.

`create_train_state(config, model, input_shape, mesh)` builds the TrainState
of `config.optim` (`segjax.optim`) in one jitted program whose
`out_shardings` come from the state's shapes (`jax.eval_shape`) and
config.mesh's rules (`segjax.sharding.tree_shardings`): every device computes
only its own shard of each leaf, so with FSDP no device and no host ever
holds the whole state. The initialisation key is made inside that program
from `config.train.seed`, so every process of a multi-process run computes
the same values without exchanging them. `config.model.init_from` then
replaces the parameters (`segjax.pretrained.init_from`: a preset or spec of
pretrained weights, or a segjax checkpoint through
`segjax.checkpoints.load_pretrained`) and the optimiser state is made afresh
from them, in the same layout. A resumed run skips that (`init_from=False`):
its checkpoint holds the weights, so nothing is read or downloaded again.

Which PRNG draws the initial values: `config.runtime.prng_impl` ('rbg' by
default, `segjax.runtime`) for a replicated state; threefry2x32 in JAX's
partitionable mode when config.mesh shards the state (`param_sharding='fsdp'`
or `param_rules`): XLA draws an rbg array whole on every device and then
slices it, while partitionable threefry draws each device's shard only
(docs/scale.md has the figures). Either way the random stream depends on the
seed and the config, not on the number of devices or processes. The values
follow it bit for bit where XLA's elementwise math does not depend on an
array's shape; XLA:CPU since jax 0.12 rounds `log` (inside the normal draws'
erf_inv) differently in its vector and scalar loops, so there a shard's value
can differ from the whole array's by 1-2 ulps (tests/train/test_fsdp.py).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from jax.sharding import Mesh

from segjax import host_memory, optim, pretrained, runtime, sharding


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the `batch_stats` collection (empty for norm-free models)."""

    batch_stats: Any = flax.struct.field(default_factory=dict)


def init_key(seed: int, *, partitionable: bool = False) -> jax.Array:
    """The key that initialises parameters: `config.runtime.prng_impl`, or threefry2x32.

    XLA:CPU compiles a threefry draw far more slowly than an 'rbg' one (the
    reason rbg is segjax's default), but only threefry draws a sharded array
    shard by shard (`partitionable`, for a sharded state; trace the draws
    under `jax.threefry_partitionable(True)`). Values are deterministic per
    seed and platform.
    """
    return jax.random.key(int(seed), impl="threefry2x32") if partitionable \
        else runtime.key(seed)


def _initializer(model: nn.Module, input_shape):
    def init(rng):
        params_rng, dropout_rng = jax.random.split(rng)
        variables = model.init({"params": params_rng, "dropout": dropout_rng},
                               jnp.zeros(input_shape, jnp.float32), train=False)
        return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

    return init


def init_variables(model: nn.Module, rng: jax.Array, input_shape) -> dict:
    """`model.init` on zeros of `input_shape` (N, *spatial, C), in eval mode (jitted)."""
    # One compiled program: op-by-op initialisation of a deep model is far slower.
    return jax.jit(_initializer(model, input_shape),
                   compiler_options=host_memory.compiler_options())(rng)


def state_from_variables(variables: dict, model: nn.Module,
                         tx: optax.GradientTransformation) -> TrainState:
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))


def _fresh_state(config, model: nn.Module, input_shape, tx: optax.GradientTransformation):
    """A function of no arguments that initialises the whole TrainState from config.train.seed.

    Trace it under `jax.threefry_partitionable(True)` (`_partitionable_draws`).
    """
    init, seed = _initializer(model, input_shape), int(config.train.seed)
    partitionable = sharding.shards_state(config.mesh)
    return lambda: state_from_variables(init(init_key(seed, partitionable=partitionable)),
                                        model, tx)


def _partitionable_draws():
    """Threefry draws that split over shardings (JAX's default, whatever the user set)."""
    return jax.threefry_partitionable(True)


def train_state_shapes(config, model: nn.Module, input_shape) -> TrainState:
    """The TrainState `create_train_state` makes, as ShapeDtypeStructs (nothing runs)."""
    tx, _ = optim.make_optimizer(config.optim, int(config.train.steps))
    with _partitionable_draws():
        return jax.eval_shape(_fresh_state(config, model, input_shape, tx))


def _variables(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def create_train_state(config, model: nn.Module, input_shape, mesh: Mesh | None = None, *,
                       init_from: bool = True) -> tuple[TrainState, optax.Schedule]:
    """A fresh TrainState (and the lr schedule), laid out on `mesh` by config.mesh.

    Without `mesh` the state is left where JAX puts it (the default device).
    `config.model.init_from` ('' , 'preset:<name>', an hf:// / https:// spec or
    PyTorch file, or a segjax variables file / training checkpoint / workdir)
    replaces all variables (`init_from_part='all'`) or only the 'encoder'
    subtree (`'encoder'`) of the fresh initialisation, unless `init_from` is
    False (a run about to restore its own checkpoint).
    """
    tx, schedule = optim.make_optimizer(config.optim, int(config.train.steps))
    fresh = _fresh_state(config, model, input_shape, tx)
    # XLA:CPU's elemental emitters (host_memory) compile threefry's long elementwise
    # chains several times more slowly than its fusion emitters, for the same memory.
    options = None if sharding.shards_state(config.mesh) else host_memory.compiler_options()
    with _partitionable_draws():
        shardings = None
        if mesh is not None:
            shardings = sharding.tree_shardings(jax.eval_shape(fresh), mesh, config.mesh)
        state = jax.jit(fresh, out_shardings=shardings, compiler_options=options)()
    if config.model.init_from and init_from:
        variables = pretrained.init_from(_variables(state), config.model)
        variables_shardings = jax.tree_util.tree_map(lambda leaf: leaf.sharding,
                                                     _variables(state))
        variables = sharding.place(variables, variables_shardings)
        del state  # its optimiser state is made again from the loaded parameters
        state = jax.jit(lambda v: state_from_variables(v, model, tx), out_shardings=shardings,
                        compiler_options=options)(variables)
    return state, schedule
