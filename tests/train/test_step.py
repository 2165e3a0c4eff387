"""train_step against a hand-written SGD step; the on-device metric accumulator."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segjax import losses
from segjax.train import step as step_lib
from segjax.train.state import TrainState
from tests.train.conftest import tiny_config


class PixelClassifier(nn.Module):
    """A 1x1 convolution; logits are returned under their name, as every model does."""

    @nn.compact
    def __call__(self, x, *, train=False):
        return {"logits": nn.Dense(3, name="classifier")(x), "ignored": x}


def test_train_step_is_one_sgd_step_on_the_configured_loss():
    model = PixelClassifier()
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.normal(size=(2, 4, 4, 2)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, 3, (2, 4, 4)), jnp.int32)}
    batch["label"] = batch["label"].at[0, 0, 0].set(255)
    params = model.init(jax.random.key(0), batch["image"])["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.5))
    loss_config = tiny_config().loss

    new_state, metrics = jax.jit(lambda s, b: step_lib.train_step(
        s, b, jax.random.key(1), model=model, loss_config=loss_config, num_classes=3,
        ignore_index=255))(state, batch)

    def expected_loss(p):
        logits = model.apply({"params": p}, batch["image"])["logits"]
        return losses.cross_entropy(logits, batch["label"], ignore_index=255)

    loss, grads = jax.value_and_grad(expected_loss)(params)
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert float(metrics["grad_norm"]) == pytest.approx(float(optax.global_norm(grads)),
                                                        rel=1e-5)
    assert int(new_state.step) == 1
    for new, old, grad in zip(*map(jax.tree_util.tree_leaves,
                                   (new_state.params, params, grads))):
        np.testing.assert_allclose(new, old - 0.5 * grad, rtol=1e-5, atol=1e-7)


def test_accumulator_means_and_first_nonfinite_step():
    accumulator = step_lib.empty_accumulator(["loss"])
    for step, loss in enumerate([1.0, 3.0, np.nan, np.inf], start=1):
        accumulator = step_lib.accumulate(accumulator, {"loss": jnp.float32(loss)},
                                          jnp.int32(step))
        if step == 2:
            assert step_lib.summarize(accumulator) == {"loss": 2.0}
    assert int(accumulator["first_nonfinite_step"]) == 3
    assert int(accumulator["count"]) == 4
