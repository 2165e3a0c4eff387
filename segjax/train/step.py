"""The train and eval steps, and their sharded compilation.

`train_step` is a pure function of arrays; `compile_train_step` jits it over a
mesh (batch split over 'data', the state replicated or sharded as
`segjax.sharding.tree_shardings` says, the state donated). The model is
applied through `segjax.models.policy.ApplyPolicy` (compute dtype,
rematerialisation). With a sharded (FSDP) state the parameters are gathered
to their compute shardings inside the step and the gradients constrained back
to the storage shardings, which XLA lowers to all-gathers and
reduce-scatters. Inference
(the loop's validation included) compiles its own function in
`segjax.evaluation`. Models return dicts: the steps read
outputs['logits'] (and the loss reads 'aux_logits'), never positions.

Metrics stay on the device: the compiled step returns the step's metrics,
whose names are the keys of its output (nothing else traces the step to find
them), and the jitted `accumulate` folds them into an accumulator (sums, a
count, and the first step whose loss was not finite), which the loop fetches
only at log and checkpoint steps.

Steps are numbered by the number of updates done: train step k turns the
state with `state.step == k - 1` into the state with `state.step == k`.
Dropout randomness is `fold_in(rng, state.step)`, so a resumed run draws the
same numbers as an uninterrupted one.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from segjax import host_memory, losses
from segjax import sharding as sharding_lib
from segjax.models.policy import ApplyPolicy
from segjax.train.state import TrainState

NO_STEP = -1


def _variables(params, batch_stats) -> dict:
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def _constrain(tree, shardings):
    return tree if shardings is None else jax.lax.with_sharding_constraint(tree, shardings)


def train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, *,
               model: nn.Module, loss_config, num_classes: int, ignore_index: int,
               policy: ApplyPolicy | None = None, param_shardings=None,
               param_compute_shardings=None) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on `batch`; returns the new state and scalar metrics.

    `param_compute_shardings` (under jit over a mesh): the parameters are
    constrained to these before use (FSDP's all-gather) and the gradients to
    `param_shardings` (the reduce-scatter back to the storage layout).
    """
    policy = policy or ApplyPolicy()
    dropout_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
        params = _constrain(params, param_compute_shardings)
        outputs, updates = policy.apply(model, _variables(params, state.batch_stats),
                                        batch["image"], train=True, mutable=["batch_stats"],
                                        rngs={"dropout": dropout_rng})
        loss, components = losses.segmentation_loss(outputs, batch, loss_config,
                                                    num_classes=num_classes,
                                                    ignore_index=ignore_index)
        return loss, (components, updates.get("batch_stats", state.batch_stats))

    (_, (components, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    grads = _constrain(grads, param_shardings)
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = {name: jnp.asarray(value, jnp.float32) for name, value in components.items()}
    metrics["grad_norm"] = optax.global_norm(grads)
    return new_state, metrics


def empty_accumulator(metric_names) -> dict[str, Any]:
    return {"sums": {name: jnp.zeros((), jnp.float32) for name in metric_names},
            "count": jnp.zeros((), jnp.int32),
            "first_nonfinite_step": jnp.full((), NO_STEP, jnp.int32)}


@jax.jit
def accumulate(accumulator: dict | None, metrics: Mapping[str, jax.Array],
               step: jax.Array) -> dict:
    """Adds one step's metrics; remembers the first step (1-based) with a non-finite loss.

    `accumulator` None starts a fresh one with the names of `metrics`.
    """
    if accumulator is None:
        accumulator = empty_accumulator(sorted(metrics))
    first = accumulator["first_nonfinite_step"]
    bad = ~jnp.isfinite(metrics["loss"]) & (first == NO_STEP)
    return {"sums": {k: accumulator["sums"][k] + metrics[k] for k in accumulator["sums"]},
            "count": accumulator["count"] + 1,
            "first_nonfinite_step": jnp.where(bad, step.astype(jnp.int32), first)}


def summarize(accumulator: dict) -> dict[str, float]:
    """Host-side means of an accumulator fetched from the device."""
    values = jax.device_get(accumulator)
    count = max(1, int(values["count"]))
    return {name: float(total) / count for name, total in values["sums"].items()}


def compile_train_step(mesh: Mesh, *, model, loss_config, num_classes: int, ignore_index: int,
                       policy: ApplyPolicy | None = None, state_shardings=None,
                       mesh_config=None):
    """jit of (state, batch, rng) -> (state, metrics) over `mesh`.

    The state is donated; the batch is split over 'data'; the metrics are
    replicated scalars (`accumulate` them). `state_shardings` (a TrainState
    of NamedShardings, `segjax.sharding.tree_shardings`) lays out the state;
    None replicates it. `mesh_config` names the FSDP axes gathered for
    compute (config.mesh).
    """
    replicated = sharding_lib.replicated_sharding(mesh)
    batch_sharding = sharding_lib.batch_sharding(mesh)
    state_in = replicated if state_shardings is None else state_shardings
    param_shardings = compute = None
    if state_shardings is not None:
        param_shardings = state_shardings.params
        compute = sharding_lib.compute_shardings(param_shardings, mesh_config or {})
    step = functools.partial(train_step, model=model, loss_config=loss_config,
                             num_classes=num_classes, ignore_index=ignore_index, policy=policy,
                             param_shardings=param_shardings, param_compute_shardings=compute)
    return jax.jit(step, in_shardings=(state_in, batch_sharding, replicated),
                   out_shardings=(state_in, replicated), donate_argnums=(0,),
                   compiler_options=host_memory.compiler_options())


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves])) if leaves \
        else jnp.bool_(True)


def tree_is_finite(tree) -> bool:
    return bool(sharding_lib.local_value(_all_finite(tree)))

