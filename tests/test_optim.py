"""Optimiser and schedule construction from config.optim, checked against hand-computed values."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segjax.config import base_config
from segjax import optim as optim_lib


def optim(**fields):
    config = base_config().optim
    for key, value in fields.items():
        config[key] = value
    return config


def test_poly_schedule_with_warmup_matches_deeplab_formula():
    _, schedule = optim_lib.make_optimizer(
        optim(name="sgd", learning_rate=0.1, schedule="poly", poly_power=0.9, warmup_steps=10),
        total_steps=100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.05)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(55)) == pytest.approx(0.1 * (1 - 45 / 90) ** 0.9, rel=1e-6)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)


def test_cosine_schedule_ends_at_end_learning_rate():
    _, schedule = optim_lib.make_optimizer(
        optim(schedule="cosine", learning_rate=1.0, end_learning_rate=0.1), total_steps=100)
    assert float(schedule(50)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert float(schedule(100)) == pytest.approx(0.1)


def test_accumulation_updates_every_k_steps_with_the_mean_gradient():
    config = optim(name="sgd", learning_rate=1.0, momentum=0.0, accumulate_steps=2)
    tx, _ = optim_lib.make_optimizer(config, total_steps=10)
    params = {"w": jnp.zeros(())}
    opt_state = tx.init(params)
    updates, opt_state = tx.update({"w": jnp.ones(())}, opt_state, params)
    params = optax.apply_updates(params, updates)
    assert float(params["w"]) == 0.0
    updates, opt_state = tx.update({"w": jnp.full((), 3.0)}, opt_state, params)
    params = optax.apply_updates(params, updates)
    assert float(params["w"]) == pytest.approx(-2.0)
    assert optim_lib.learning_rate_at(lambda t: t, config, 7) == 3


def test_weight_decay_applies_to_kernels_only():
    tx, _ = optim_lib.make_optimizer(
        optim(name="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.5), total_steps=10)
    params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
    zeros = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0)
    np.testing.assert_allclose(updates["bias"], 0.0)


def test_gradient_clipping_bounds_the_global_norm():
    tx, _ = optim_lib.make_optimizer(
        optim(name="sgd", learning_rate=1.0, momentum=0.0, grad_clip_norm=1.0), total_steps=10)
    params = {"a": jnp.zeros((2,))}
    updates, _ = tx.update({"a": jnp.array([6.0, 8.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["a"], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize("field,value,valid", [("name", "adagrad", "adam, adamw, sgd"),
                                               ("schedule", "step", "constant, poly, cosine")])
def test_unknown_names_are_errors_listing_the_valid_ones(field, value, valid):
    with pytest.raises(ValueError, match=f"config.optim.{field}=.{value}..*{valid}"):
        optim_lib.make_optimizer(optim(**{field: value}), total_steps=10)
