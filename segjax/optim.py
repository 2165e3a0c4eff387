"""Optimisers and learning-rate schedules from `config.optim`.

`make_optimizer(config.optim, total_steps)` returns an optax transformation and
its learning-rate schedule. The chain is: gradient clipping by global norm
(`grad_clip_norm` > 0) -> the registered optimiser (`config.optim.name`, which
applies weight decay as it defines it) scaled by the schedule, wrapped in
`optax.MultiSteps` when `accumulate_steps` > 1.

Optimisers are registry entries of kind "optimizer": a function
`(optim_config, schedule) -> optax.GradientTransformation`. A new paper
registers its own with `@register("optimizer", name)` in a module listed in
`config.imports`.

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

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from segjax import registry
from segjax.registry import register

SCHEDULES = ("constant", "poly", "cosine")


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
        raise ValueError(f"config.optim.schedule={name!r} is not one of: "
                         f"{', '.join(SCHEDULES)}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def kernels_only(params):
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(optim_config, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, schedule) for `config.optim` and `total_steps` train steps."""
    optimizer = registry.lookup("optimizer", str(optim_config.name), "config.optim.name")
    accumulate = int(optim_config.accumulate_steps)
    if accumulate < 1:
        raise ValueError(f"config.optim.accumulate_steps must be >= 1, got {accumulate}")
    schedule = make_schedule(optim_config, max(1, total_steps // accumulate))
    parts = []
    if optim_config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(float(optim_config.grad_clip_norm)))
    parts.append(optimizer(optim_config, schedule))
    tx = optax.chain(*parts) if len(parts) > 1 else parts[0]
    if accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate)
    return tx, schedule


def learning_rate_at(schedule: Callable, optim_config, step: int) -> float:
    """The learning rate used by train step `step` (accounting for accumulation)."""
    return float(schedule(step // int(optim_config.accumulate_steps)))


def _with_l2(optim_config, transformation: optax.GradientTransformation
             ) -> optax.GradientTransformation:
    """PyTorch-style weight decay: decay * params added to the gradient, kernels only."""
    decay = float(optim_config.weight_decay)
    if not decay:
        return transformation
    return optax.chain(optax.add_decayed_weights(decay, mask=kernels_only), transformation)


@register("optimizer", "adam")
def adam(optim_config, schedule) -> optax.GradientTransformation:
    return _with_l2(optim_config, optax.adam(schedule))


@register("optimizer", "adamw")
def adamw(optim_config, schedule) -> optax.GradientTransformation:
    return optax.adamw(schedule, weight_decay=float(optim_config.weight_decay),
                       mask=kernels_only)


@register("optimizer", "sgd")
def sgd(optim_config, schedule) -> optax.GradientTransformation:
    return _with_l2(optim_config, optax.sgd(schedule,
                                            momentum=float(optim_config.momentum) or None,
                                            nesterov=bool(optim_config.nesterov)))
