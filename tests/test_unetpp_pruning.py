"""experiments/unetpp_pruning.py on a small deep-supervised UNet++ checkpoint and synthetic data."""

import json

import jax
import numpy as np
import pytest

from experiments import unetpp_pruning
from segjax import checkpoints
from segjax.config import base_config
from segjax.models import registry


@pytest.fixture
def checkpoint(tmp_path, random_variables):
    """A variables checkpoint of a narrow paper UNet++ (deep supervision) with its config."""
    config = base_config()
    config.model.name = "unetplusplus"
    config.model.num_classes = 2
    config.model.filters = (4, 8, 8, 8, 8)
    config.model.deep_supervision = True
    config.data.source = "synthetic"
    config.data.synthetic.update(num_examples=2, height=32, width=48, num_classes=2)
    config.data.image_channels = 1
    model = registry.build(config.model)
    variables = random_variables(model, np.zeros((1, 32, 48, 1), np.float32))
    path = checkpoints.save_variables(tmp_path / "variables", variables,
                                      {"model": config.model.to_dict()})
    (tmp_path / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    return path, variables


def test_pruning_report_shrinks_with_depth(checkpoint, tmp_path):
    path, _ = checkpoint
    output = tmp_path / "report"
    unetpp_pruning.main(["--checkpoint", str(path), "--split", "train", "--repeats", "1",
                         "--output", str(output)])
    rows = json.loads((output / "pruning.json").read_text())
    assert [row["depth"] for row in rows] == [1, 2, 3, 4]
    parameters = [row["parameters"] for row in rows]
    gflops = [row["gflops"] for row in rows]
    assert parameters == sorted(parameters) and gflops == sorted(gflops)
    assert all(0 <= row["miou"] <= 1 and row["forward_seconds"] > 0 for row in rows)
    assert "| L4 |" in (output / "pruning.md").read_text()


def test_pruned_variables_names_a_missing_branch(checkpoint):
    _, variables = checkpoint
    model = registry.build({"name": "unetplusplus", "num_classes": 2,
                            "filters": (4, 8, 8, 8, 8), "prune_depth": 2})
    shapes = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False),
                            jax.ShapeDtypeStruct((1, 32, 48, 1), np.float32))
    assert jax.tree_util.tree_structure(unetpp_pruning.pruned_variables(variables, shapes)) == \
        jax.tree_util.tree_structure(shapes)
    del variables["params"]["decoder"]["branch2"]
    with pytest.raises(KeyError, match="no variable params/decoder/branch2"):
        unetpp_pruning.pruned_variables(variables, shapes)
