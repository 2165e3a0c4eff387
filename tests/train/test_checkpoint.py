"""Training checkpoints: refusing a checkpoint of another model, reading a workdir, init_from."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segjax import checkpoints
from segjax.train import checkpoint, state as state_lib
from segjax.train.state import TrainState
from tests.train.conftest import tiny_config


def make_state(width):
    params = {"conv": {"kernel": jnp.ones((3, 3, 1, width))}}
    return TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1), batch_stats={})


def test_restoring_a_checkpoint_of_another_model_names_both(tmp_path):
    iterator = iter(grain.MapDataset.range(10).batch(2).to_iter_dataset())
    saved = checkpoint.TrainingCheckpoints(tmp_path, tiny_config(model__name="fcn8s"))
    saved.save(2, make_state(8), iterator)
    saved.close()

    other = checkpoint.TrainingCheckpoints(tmp_path, tiny_config())
    with pytest.raises(checkpoint.ConfigChanged,
                       match=r"checkpoints/2 was written by another model than the config "
                             r"describes: config.model.name: checkpoint 'fcn8s', config 'unet'.*"
                             r"params/conv/kernel: expected shape \(3, 3, 1, 4\), checkpoint "
                             r"has \(3, 3, 1, 8\)"):
        other.restore(make_state(4), iter(grain.MapDataset.range(10).batch(2).to_iter_dataset()))

    same = checkpoint.TrainingCheckpoints(tmp_path, tiny_config(model__name="fcn8s"))
    fresh_iterator = iter(grain.MapDataset.range(10).batch(2).to_iter_dataset())
    state, step = same.restore(make_state(8), fresh_iterator)
    assert step == 2 and int(state.step) == 0
    np.testing.assert_array_equal(next(fresh_iterator), [0, 1])  # nothing consumed before save


def test_read_checkpoint_through_a_relative_workdir(tmp_path, monkeypatch):
    """`python -m segjax.evaluate --workdir runs/x` passes a relative path to Orbax."""
    iterator = iter(grain.MapDataset.range(10).batch(2).to_iter_dataset())
    saved = checkpoint.TrainingCheckpoints(tmp_path / "run", tiny_config())
    saved.save(3, make_state(4), iterator)
    saved.close()
    monkeypatch.chdir(tmp_path)
    variables, metadata = checkpoints.read_checkpoint("run")
    np.testing.assert_array_equal(variables["params"]["conv"]["kernel"], np.ones((3, 3, 1, 4)))


def test_create_train_state_starts_from_init_from(tmp_path):
    from segjax.models import registry
    config = tiny_config()
    model = registry.build(config.model)
    variables = state_lib.init_variables(model, state_lib.init_key(1), (1, 16, 16, 1))
    shifted = jax.tree_util.tree_map(lambda x: np.asarray(x) + 0.5, variables)
    path = checkpoints.save_variables(tmp_path / "start", shifted, {})
    config.model.init_from = str(path)
    state, _ = state_lib.create_train_state(config, model, (1, 16, 16, 1))
    for got, want in zip(jax.tree_util.tree_leaves((state.params, state.batch_stats)),
                         jax.tree_util.tree_leaves((shifted["params"], shifted["batch_stats"]))):
        np.testing.assert_array_equal(got, want)
