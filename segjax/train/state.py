"""The train state and its creation (the optimiser comes from `segjax.optim`).

`create_train_state(config, model, rng, input_shape)` initialises the model
(honouring `config.model.init_from`) and pairs it with the optimiser of
`config.optim`.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from segjax import checkpoints, host_memory, optim, runtime


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the `batch_stats` collection (empty for norm-free models)."""

    batch_stats: Any = flax.struct.field(default_factory=dict)


def init_key(seed: int) -> jax.Array:
    """The key that initialises parameters, of `config.runtime.prng_impl` ('rbg' by default).

    'rbg' because XLA:CPU compiles threefry draws slowly (docs/runtime.md).
    Values are deterministic per seed and platform (multi-process runs also
    broadcast process 0's values).
    """
    return runtime.key(seed)


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


def train_state_shapes(config, model: nn.Module, input_shape) -> TrainState:
    """The TrainState `create_train_state` makes, as ShapeDtypeStructs (nothing runs)."""
    tx, _ = optim.make_optimizer(config.optim, int(config.train.steps))
    init = _initializer(model, input_shape)
    return jax.eval_shape(lambda rng: state_from_variables(init(rng), model, tx),
                          init_key(int(config.train.seed)))


def state_from_variables(variables: dict, model: nn.Module,
                         tx: optax.GradientTransformation) -> TrainState:
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))


def create_train_state(config, model: nn.Module, rng: jax.Array, input_shape
                       ) -> tuple[TrainState, optax.Schedule]:
    """A fresh TrainState (and the lr schedule) for `model`, honouring config.model.init_from.

    `config.model.init_from` ('' or a variables file / training checkpoint /
    workdir) replaces all variables (`init_from_part='all'`) or only the
    'encoder' subtree (`'encoder'`) of the fresh initialisation.
    """
    tx, schedule = optim.make_optimizer(config.optim, int(config.train.steps))
    variables = init_variables(model, rng, input_shape)
    if config.model.init_from:
        variables = checkpoints.load_pretrained(variables, config.model.init_from,
                                               config.model.init_from_part)
    return state_from_variables(variables, model, tx), schedule
