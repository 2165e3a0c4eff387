"""The train state, the optimiser built from `config.optim`, and state creation.

`make_optimizer(config.optim, total_steps)` returns an optax transformation and
its learning-rate schedule. The chain is: gradient clipping by global norm
(`grad_clip_norm` > 0) -> weight decay -> the optimiser scaled by the schedule,
wrapped in `optax.MultiSteps` when `accumulate_steps` > 1.

Decisions:
- `total_steps` counts train steps (micro-batches). With accumulation the
  optimiser updates every `accumulate_steps` steps and the schedule runs over
  `total_steps // accumulate_steps` updates.
- Weight decay applies to parameters with more than one dimension (kernels),
  not to biases and normalisation scales. `adamw` uses decoupled decay (scaled
  by the learning rate, as in optax); for `adam` and `sgd` the decay is added
  to the gradient (L2, as PyTorch's `weight_decay` argument).
- Schedules: `constant`; `poly` (DeepLab: (lr - end) * (1 - t/T)^power + end);
  `cosine` (from lr to `end_learning_rate`), each after `warmup_steps` of
  linear warmup from 0.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from segjax import host_memory

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "poly", "cosine")


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the `batch_stats` collection (empty for norm-free models)."""

    batch_stats: Any = flax.struct.field(default_factory=dict)


def make_schedule(optim_config, num_updates: int) -> optax.Schedule:
    """The learning-rate schedule over `num_updates` optimiser updates."""
    name = optim_config.schedule
    lr = float(optim_config.learning_rate)
    end = float(optim_config.end_learning_rate)
    warmup = int(optim_config.warmup_steps)
    decay_steps = max(1, num_updates - warmup)
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "poly":
        main = optax.polynomial_schedule(lr, end, float(optim_config.poly_power), decay_steps)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
    else:
        raise ValueError(f"config.optim.schedule {name!r} is not one of: {', '.join(SCHEDULES)}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _kernels_only(params):
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(optim_config, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, schedule) for `config.optim` and `total_steps` train steps."""
    name = optim_config.name
    if name not in OPTIMIZERS:
        raise ValueError(f"config.optim.name {name!r} is not one of: {', '.join(OPTIMIZERS)}")
    accumulate = int(optim_config.accumulate_steps)
    if accumulate < 1:
        raise ValueError(f"config.optim.accumulate_steps must be >= 1, got {accumulate}")
    schedule = make_schedule(optim_config, max(1, total_steps // accumulate))
    decay = float(optim_config.weight_decay)
    parts = []
    if optim_config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(float(optim_config.grad_clip_norm)))
    if name == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=decay, mask=_kernels_only))
    else:
        if decay:
            parts.append(optax.add_decayed_weights(decay, mask=_kernels_only))
        if name == "adam":
            parts.append(optax.adam(schedule))
        else:
            parts.append(optax.sgd(schedule, momentum=float(optim_config.momentum) or None,
                                   nesterov=bool(optim_config.nesterov)))
    tx = optax.chain(*parts) if len(parts) > 1 else parts[0]
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
    return tx, schedule


def learning_rate_at(schedule: Callable, optim_config, step: int) -> float:
    """The learning rate used by train step `step` (accounting for accumulation)."""
    return float(schedule(step // int(optim_config.accumulate_steps)))


def init_key(seed: int) -> jax.Array:
    """The key that initialises parameters: the 'rbg' PRNG.

    XLA:CPU takes ~7 s to compile one threefry draw, so a threefry
    initialisation of a 20-layer model compiles for minutes; 'rbg' compiles in
    well under a second per draw. Values are deterministic per seed and
    platform (multi-process runs also broadcast process 0's values).
    """
    return jax.random.key(int(seed), impl="rbg")


def init_variables(model: nn.Module, rng: jax.Array, input_shape) -> dict:
    """`model.init` on zeros of `input_shape` (N, *spatial, C), in eval mode (jitted)."""
    def init(rng):
        params_rng, dropout_rng = jax.random.split(rng)
        variables = model.init({"params": params_rng, "dropout": dropout_rng},
                               jnp.zeros(input_shape, jnp.float32), train=False)
        return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

    # One compiled program: op-by-op initialisation of a deep model is far slower.
    return jax.jit(init, compiler_options=host_memory.compiler_options())(rng)


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
    from segjax.train import checkpoint

    tx, schedule = make_optimizer(config.optim, int(config.train.steps))
    variables = init_variables(model, rng, input_shape)
    if config.model.init_from:
        variables = checkpoint.load_pretrained(variables, config.model.init_from,
                                               config.model.init_from_part)
    return state_from_variables(variables, model, tx), schedule
