"""A new paper in its own files: config.imports registers a decoder, a loss and a data source
that segjax/ never names."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry

CONFIG = "experiments/example_paper/config.py"


def load_config(arg: str):
    spec = importlib.util.spec_from_file_location("example_paper_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_config_imports_register_the_new_decoder_and_the_model_builds():
    config = load_config("smoke")
    registry.import_modules(config.imports)
    assert "example_residual_unet" in registry.names("decoder")
    model = registry.build(config.model)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    outputs, _ = jax.eval_shape(lambda v: model.init_with_output(jax.random.PRNGKey(0), v), x)
    assert outputs["logits"].shape == (1, 64, 64, 11)


def test_a_missing_import_module_is_named():
    with pytest.raises(ImportError, match="config.imports: cannot import 'experiments.nope'"):
        registry.import_modules(["experiments.nope"])


def test_the_papers_loss_is_registered_and_matches_a_hand_value():
    config = load_config("smoke")
    registry.import_modules(config.imports)
    from segjax import losses
    assert "generalized_dice" in registry.names("loss") and "npz" in registry.names("source")
    # Two valid pixels, one of each class (weights 1): p = softmax([2, 0]) and softmax([0, 1]);
    # the overlap is s(2) + s(1) (s the logistic function), the total 2 + 2 = 4; one ignored.
    logits = jnp.array([[[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]]])
    labels = jnp.array([[0, 1, 255]])
    s1, s2 = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-2.0))
    expected = 1 - 2 * (s1 + s2) / 4
    total, parts = losses.segmentation_loss({"logits": logits}, {"label": labels}, config.loss,
                                            num_classes=2, ignore_index=255)
    assert float(parts["generalized_dice"]) == pytest.approx(expected, rel=1e-6)
    cross_entropy = losses.cross_entropy(logits, labels, ignore_index=255)
    assert float(total) == pytest.approx(expected + float(cross_entropy), rel=1e-6)


def test_a_run_reads_the_papers_npz_source_and_trains_with_its_loss(tmp_path):
    from segjax.train import loop
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for index in range(count):
            label = rng.integers(0, 12, size=(40, 40))
            image = (label[..., None] * 20 + rng.integers(0, 10, size=(40, 40, 3))).astype(
                np.uint8)
            np.savez(tmp_path / "data" / split / f"{index}.npz", image=image, label=label)
    config = load_config("smoke,npz")
    config.data.root = str(tmp_path / "data")
    config.data.crop = (32, 32)
    config.model.encoder = {"name": "resnet18"}
    result = loop.train_and_evaluate(config, tmp_path / "run")
    assert result["num_images"] == 2 and 0.0 <= result["miou"] <= 1.0
    import json
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert any("train/generalized_dice" in record and "train/cross_entropy" in record
               for record in logged)
