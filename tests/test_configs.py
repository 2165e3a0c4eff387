"""Every experiment config: loads, follows the schema, is locked, and names a buildable model."""

from pathlib import Path

import numpy as np
import pytest

from segjax.config import base_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
EXPERIMENTS = sorted(p.stem for p in CONFIG_DIR.glob("*.py")
                     if p.stem != "__init__" and not p.stem.startswith("common"))


def load(name: str, arg: str = ""):
    import importlib
    module = importlib.import_module(f"configs.{name}")
    return module.get_config(arg)


def _keys(config, prefix=""):
    keys = set()
    for key, value in config.items():
        keys.add(prefix + key)
        if hasattr(value, "items"):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_follows_the_schema_and_builds(name):
    from segjax.models import registry
    config = load(name)
    missing = _keys(base_config()) - _keys(config)
    assert not missing, f"configs/{name}.py lacks schema keys {sorted(missing)}"
    with pytest.raises(AttributeError, match="stpes"):
        config.train.stpes = 1
    registry.import_modules(config.imports)
    registry.build(config.model)


@pytest.mark.parametrize("arg", ["smoke", "padded", "padded,smoke", "smoke,binary"])
def test_unet_isbi_variants_have_consistent_sizes(arg):
    from segjax.models.unet import valid_output_size
    config = load("unet_isbi", arg)
    if config.model.padding == "valid":
        out = valid_output_size(config.data.crop[0], config.model.depth)
        assert (config.data.crop[0] - out) // 2 == config.data.pad_margin
        assert tuple(config.eval.tile) == tuple(config.data.crop)
    else:
        assert all(s % 2 ** config.model.depth == 0 for s in config.data.crop)
    assert config.data.batch_size % 1 == 0 and config.train.steps > 0


def test_paper_config_matches_the_paper():
    config = load("unet_isbi", "paper")
    assert tuple(config.data.crop) == (572, 572) and config.data.pad_margin == 92
    assert config.model.depth == 4 and config.model.width == 64
    assert config.data.weight_map.enabled and config.loss.use_weight_map
    assert config.data.weight_map.w0 == 10.0 and config.data.weight_map.sigma == 5.0
    assert config.data.augment.elastic_sigma == 10.0
    assert config.optim.learning_rate == 1e-4 and config.optim.schedule == "constant"


def test_demo_recipe_keeps_the_paper_network_and_drops_its_training_extras():
    demo, paper = load("unet_isbi"), load("unet_isbi", "paper")
    assert demo.model == paper.model and tuple(demo.eval.tile) == tuple(paper.eval.tile)
    assert demo.eval.flip and not paper.eval.flip
    assert tuple(demo.data.crop) == tuple(paper.data.crop)
    assert not demo.data.weight_map.enabled and not demo.loss.use_weight_map
    assert demo.data.augment.elastic_sigma == 0.0
    assert demo.optim.learning_rate == 3e-4 and demo.optim.schedule == "cosine"
    assert demo.train.max_minutes == 15.0 and demo.train.eval_every == demo.train.steps


def test_unknown_config_argument_is_named():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['smok'\]; valid: smoke, "
                                         r"padded"):
        load("unet_isbi", "smok")


@pytest.mark.parametrize("arg", ["", "cpu", "smoke"])
def test_nonewnet_isbi_3d_and_2d_share_split_and_budget(arg):
    volume = load("nonewnet_isbi", arg)
    flat = load("nonewnet_isbi", ",".join(filter(None, [arg, "2d"])))
    assert volume.data.source == "stack" and flat.data.source == "folder"
    if arg != "smoke":
        assert volume.data.train_split == flat.data.train_split == "train[:24]"
        assert volume.data.val_split == flat.data.val_split == "train[24:30]"
        voxels = lambda c: c.data.batch_size * int(np.prod(c.data.crop))  # noqa: E731
        assert voxels(volume) == voxels(flat) == 2 * 16 * 96 * 96
    for section in ("model", "loss", "optim", "train"):
        assert volume[section].to_dict() == flat[section].to_dict()
    depth = volume.model.get("depth", 4)
    assert len(volume.data.crop) == 3 and len(flat.data.crop) == 2
    assert all(s % 2 ** depth == 0 for s in tuple(volume.data.crop) + tuple(volume.eval.tile))
    with pytest.raises(ValueError, match="unknown argument"):
        load("nonewnet_isbi", "3d")


def test_notebook_builds_its_config_without_the_repository_on_sys_path(tmp_path):
    """The Colab notebook's config cell runs where only the installed package is importable."""
    import json
    import subprocess
    import sys
    notebook = json.loads((CONFIG_DIR.parent / "colab" / "01_quickstart.ipynb").read_text())
    parameters = next("".join(c["source"]) for c in notebook["cells"]
                      if "parameters" in c["metadata"].get("tags", []))
    cell = next("".join(c["source"]) for c in notebook["cells"]
                if c["cell_type"] == "code" and "base_config()" in "".join(c["source"]))
    code = ("import sys\nsys.path = [p for p in sys.path if p not in ('', '.')]\n" + parameters
            + "\n" + cell +
            "\nassert 'configs' not in sys.modules\n"
            "assert config.model.name == 'unet' and config.data.label_values == (0, 255)\n"
            "print('built', config.data.train_split, config.data.val_split)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "built train[:25] train[25:30]" in result.stdout
