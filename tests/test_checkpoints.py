"""Checkpoint I/O (segjax.checkpoints): the variables format, init_from merging, `load`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import checkpoints
from segjax.train import state as state_lib
from tests.train.conftest import tiny_config


def test_save_and_load_variables_round_trip(tmp_path):
    variables = {"params": {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                                     "bias": jnp.ones((3,), jnp.bfloat16)}},
                 "batch_stats": {"bn": {"mean": np.zeros((3,), np.float32)}}}
    checkpoints.save_variables(tmp_path / "w", {"params": {"old": np.zeros(2)}}, {})
    path = checkpoints.save_variables(tmp_path / "w", variables,
                                     {"model": {"name": "unet"}, "source": "torch"})
    loaded, metadata = checkpoints.load_variables(path)
    assert metadata == {"model": {"name": "unet"}, "source": "torch"}
    np.testing.assert_array_equal(loaded["params"]["conv"]["kernel"],
                                  variables["params"]["conv"]["kernel"])
    assert loaded["params"]["conv"]["bias"].dtype == jnp.bfloat16
    assert loaded["batch_stats"]["bn"]["mean"].shape == (3,)
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary directory left


def test_load_variables_rejects_other_files(tmp_path):
    (tmp_path / "x").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="x is not a segjax variables checkpoint"):
        checkpoints.load_variables(tmp_path / "x")
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="run is not a segjax variables checkpoint"):
        checkpoints.load_variables(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="missing"):
        checkpoints.load_variables(tmp_path / "missing")


def fresh_variables(head_classes=3):
    return {"params": {"encoder": {"kernel": np.zeros((2, 2), np.float32)},
                       "head": {"kernel": np.zeros((4, head_classes), np.float32)}},
            "batch_stats": {"encoder": {"mean": np.zeros((2,), np.float32)}}}


def test_init_from_encoder_keeps_the_fresh_head(tmp_path):
    pretrained = jax.tree_util.tree_map(lambda x: x + 1, fresh_variables(head_classes=21))
    path = checkpoints.save_variables(tmp_path / "pre", pretrained,
                                     {"model": {"name": "deeplab"}})
    merged = checkpoints.load_pretrained(fresh_variables(), path, "encoder")
    np.testing.assert_array_equal(merged["params"]["encoder"]["kernel"], 1.0)
    np.testing.assert_array_equal(merged["batch_stats"]["encoder"]["mean"], 1.0)
    np.testing.assert_array_equal(merged["params"]["head"]["kernel"], 0.0)
    assert merged["params"]["head"]["kernel"].shape == (4, 3)

    with pytest.raises(ValueError, match=r"pre.*'deeplab'.*params/head/kernel: "
                                         r"expected shape \(4, 3\), checkpoint has \(4, 21\)"):
        checkpoints.load_pretrained(fresh_variables(), path, "all")
    with pytest.raises(ValueError, match="init_from_part 'decoder'"):
        checkpoints.load_pretrained(fresh_variables(), path, "decoder")


def test_load_from_a_variables_file(tmp_path):
    config = tiny_config()
    from segjax.models import registry
    model = registry.build(config.model)
    variables = state_lib.init_variables(model, state_lib.init_key(0), (1, 16, 16, 1))
    path = checkpoints.save_variables(
        tmp_path / "v", variables,
        {"model": json.loads(config.model.to_json_best_effort())})
    loaded = checkpoints.load(path)
    restored_model, restored, restored_config = loaded.model, loaded.variables, loaded.config
    assert restored_config.model.width == 4
    assert checkpoints.read_metadata(path) == loaded.metadata
    x = jnp.linspace(0, 1, 256).reshape(1, 16, 16, 1)
    apply = jax.jit(lambda m, v: m.apply(v, x)["logits"], static_argnums=0)
    np.testing.assert_allclose(apply(restored_model, restored), apply(model, variables),
                               rtol=1e-6)


def test_inference_builds_the_model_the_checkpoint_stored_not_config_json(tmp_path):
    """A later config.json (another width) must not change what a checkpoint restores as."""
    config = tiny_config()
    from segjax.models import registry
    model = registry.build(config.model)
    variables = state_lib.init_variables(model, state_lib.init_key(0), (1, 16, 16, 1))
    path = checkpoints.save_variables(tmp_path / checkpoints.BEST_DIR / checkpoints.BEST_FILE,
                                      variables,
                                      {"model": json.loads(config.model.to_json_best_effort())})
    later = tiny_config(model__width=8, data__mean=(0.25,))
    (tmp_path / checkpoints.CONFIG_FILE).write_text(later.to_json_best_effort())
    loaded = checkpoints.load(path)
    assert loaded.config.model.width == 4 and loaded.model.width == 4
    assert tuple(loaded.config.data.mean) == (0.25,)  # data settings from config.json
    # The stored config takes --config.* overrides: its sequences are tuples again, and
    # a section config.json lacks has the schema's defaults.
    stored = checkpoints.stored_config(path)
    assert stored.eval.scales == (1.0,) and stored.data.crop == tuple(later.data.crop)
    wider = checkpoints.load(path, tiny_config(model__width=8))
    assert wider.model.width == 8


def test_save_variables_replaces_only_variables_checkpoints(tmp_path):
    variables = {"params": {"w": np.ones(2, np.float32)}}
    (tmp_path / "empty").mkdir()
    checkpoints.save_variables(tmp_path / "empty", variables)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="run is a non-empty directory that is not a "
                                              "segjax variables checkpoint"):
        checkpoints.save_variables(tmp_path / "run", variables)
    (tmp_path / "file").write_text("y")
    with pytest.raises(FileExistsError, match="file is a file that is not"):
        checkpoints.save_variables(tmp_path / "file", variables)
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"
    checkpoints.save_variables(tmp_path / "run", variables, overwrite=True)
    assert checkpoints.is_variables_checkpoint(tmp_path / "run")
