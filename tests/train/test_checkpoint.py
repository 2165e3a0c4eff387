"""Plain variable files, init_from merging, and refusing a checkpoint of another model."""

import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from segjax.train import checkpoint, state as state_lib
from segjax.train.state import TrainState
from tests.train.conftest import tiny_config


def test_save_and_load_variables_round_trip(tmp_path):
    variables = {"params": {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                                     "bias": jnp.ones((3,), jnp.bfloat16)}},
                 "batch_stats": {"bn": {"mean": np.zeros((3,), np.float32)}}}
    checkpoint.save_variables(tmp_path / "w", {"params": {"old": np.zeros(2)}}, {})
    path = checkpoint.save_variables(tmp_path / "w", variables,
                                     {"model": {"name": "unet"}, "source": "torch"})
    loaded, metadata = checkpoint.load_variables(path)
    assert metadata == {"model": {"name": "unet"}, "source": "torch"}
    np.testing.assert_array_equal(loaded["params"]["conv"]["kernel"],
                                  variables["params"]["conv"]["kernel"])
    assert loaded["params"]["conv"]["bias"].dtype == jnp.bfloat16
    assert loaded["batch_stats"]["bn"]["mean"].shape == (3,)
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary directory left


def test_load_variables_rejects_other_files(tmp_path):
    (tmp_path / "x").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="x is not a segjax variables checkpoint"):
        checkpoint.load_variables(tmp_path / "x")
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="run is not a segjax variables checkpoint"):
        checkpoint.load_variables(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="missing"):
        checkpoint.load_variables(tmp_path / "missing")


def fresh_variables(head_classes=3):
    return {"params": {"encoder": {"kernel": np.zeros((2, 2), np.float32)},
                       "head": {"kernel": np.zeros((4, head_classes), np.float32)}},
            "batch_stats": {"encoder": {"mean": np.zeros((2,), np.float32)}}}


def test_init_from_encoder_keeps_the_fresh_head(tmp_path):
    pretrained = jax.tree_util.tree_map(lambda x: x + 1, fresh_variables(head_classes=21))
    path = checkpoint.save_variables(tmp_path / "pre", pretrained,
                                     {"model": {"name": "deeplab"}})
    merged = checkpoint.load_pretrained(fresh_variables(), path, "encoder")
    np.testing.assert_array_equal(merged["params"]["encoder"]["kernel"], 1.0)
    np.testing.assert_array_equal(merged["batch_stats"]["encoder"]["mean"], 1.0)
    np.testing.assert_array_equal(merged["params"]["head"]["kernel"], 0.0)
    assert merged["params"]["head"]["kernel"].shape == (4, 3)

    with pytest.raises(ValueError, match=r"pre.*'deeplab'.*params/head/kernel: "
                                         r"expected shape \(4, 3\), checkpoint has \(4, 21\)"):
        checkpoint.load_pretrained(fresh_variables(), path, "all")
    with pytest.raises(ValueError, match="init_from_part 'decoder'"):
        checkpoint.load_pretrained(fresh_variables(), path, "decoder")


def make_state(width):
    params = {"conv": {"kernel": jnp.ones((3, 3, 1, width))}}
    return TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1), batch_stats={})


def test_restoring_a_checkpoint_of_another_model_names_both(tmp_path):
    iterator = iter(grain.MapDataset.range(10).batch(2).to_iter_dataset())
    saved = checkpoint.TrainingCheckpoints(tmp_path, tiny_config(model__name="fcn8s"))
    saved.save(2, make_state(8), iterator)
    saved.close()

    other = checkpoint.TrainingCheckpoints(tmp_path, tiny_config())
    with pytest.raises(ValueError, match=r"checkpoints/2 was written by model 'fcn8s' but "
                                         r"config.model.name is 'unet'.*params/conv/kernel: "
                                         r"expected shape \(3, 3, 1, 4\), checkpoint has "
                                         r"\(3, 3, 1, 8\)"):
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
    variables, metadata = checkpoint.read_checkpoint("run")
    np.testing.assert_array_equal(variables["params"]["conv"]["kernel"], np.ones((3, 3, 1, 4)))


def test_restore_for_inference_from_a_variables_file(tmp_path):
    config = tiny_config()
    from segjax.models import registry
    model = registry.build(config.model)
    variables = state_lib.init_variables(model, state_lib.init_key(0), (1, 16, 16, 1))
    path = checkpoint.save_variables(
        tmp_path / "v", variables,
        {"model": json.loads(config.model.to_json_best_effort())})
    restored_model, restored, restored_config = checkpoint.restore_for_inference(path)
    assert restored_config.model.width == 4
    x = jnp.linspace(0, 1, 256).reshape(1, 16, 16, 1)
    apply = jax.jit(lambda m, v: m.apply(v, x)["logits"], static_argnums=0)
    np.testing.assert_allclose(apply(restored_model, restored), apply(model, variables),
                               rtol=1e-6)


def test_create_train_state_starts_from_init_from(tmp_path):
    from segjax.models import registry
    config = tiny_config()
    model = registry.build(config.model)
    variables = state_lib.init_variables(model, state_lib.init_key(1), (1, 16, 16, 1))
    shifted = jax.tree_util.tree_map(lambda x: np.asarray(x) + 0.5, variables)
    path = checkpoint.save_variables(tmp_path / "start", shifted, {})
    config.model.init_from = str(path)
    state, _ = state_lib.create_train_state(config, model, state_lib.init_key(0), (1, 16, 16, 1))
    for got, want in zip(jax.tree_util.tree_leaves((state.params, state.batch_stats)),
                         jax.tree_util.tree_leaves((shifted["params"], shifted["batch_stats"]))):
        np.testing.assert_array_equal(got, want)
