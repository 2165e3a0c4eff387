"""jax.export round trip: the reloaded artifact gives the model's logits without segjax."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.config import base_config
from segjax import export
from segjax.models import registry
from segjax import checkpoints


def _reference(model, variables, x):
    return jax.jit(lambda v, x: model.apply(v, x, train=False)["logits"])(variables, x)


@pytest.fixture(scope="module")
def tiny_valid_unet(random_variables):
    model = registry.build({"name": "unet", "num_classes": 2, "width": 4, "depth": 2,
                            "padding": "valid"})
    variables = random_variables(model, jnp.zeros((1, 92, 92, 1)))
    return model, variables


def test_symbolic_batch_round_trip(tiny_valid_unet, tmp_path):
    model, variables = tiny_valid_unet
    path = export.save_exported(export.export_model(model, variables, (92, 92, 1)),
                                tmp_path / "unet.jaxexport", {"class_names": ["a", "b"]})
    function, metadata = export.load_exported(path)
    assert metadata["input_shape"] == ["b", "92", "92", "1"]
    assert metadata["output_shape"] == ["b", "52", "52", "2"]
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.normal(size=(batch, 92, 92, 1)).astype(np.float32)
        expected = _reference(model, variables, x)
        np.testing.assert_allclose(np.asarray(function(x)), expected, atol=1e-5)


def test_reload_runs_without_segjax(tiny_valid_unet, tmp_path):
    """A fresh interpreter with only jax and numpy: deserialize and call."""
    model, variables = tiny_valid_unet
    path = export.save_exported(export.export_model(model, variables, (92, 92, 1), batch=2),
                                tmp_path / "fixed.jaxexport")
    x = np.random.default_rng(1).normal(size=(2, 92, 92, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, jax\n"
        f"exported = jax.export.deserialize(bytearray(open({str(path)!r}, 'rb').read()))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(exported.call(np.load("
        f"{str(tmp_path / 'x.npy')!r}))))\n"
        "assert not any(name.startswith('segjax') for name in sys.modules)\n")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
    expected = _reference(model, variables, x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)
    function, _ = export.load_exported(path)
    with pytest.raises(Exception, match="shape"):
        function(np.zeros((3, 92, 92, 1), np.float32))


def test_export_command_from_run_dir(tiny_valid_unet, tmp_path):
    model, variables = tiny_valid_unet
    config = base_config()
    config.model.name = "unet"
    config.model.width, config.model.depth, config.model.padding = 4, 2, "valid"
    config.data.image_channels = 1
    config.eval.tile = (92, 92)
    (tmp_path / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    checkpoints.save_variables(tmp_path / checkpoints.BEST_DIR / checkpoints.BEST_FILE, variables,
                              {"model": config.model.to_dict()})
    output = tmp_path / "out" / "model.jaxexport"
    assert export.main(["--workdir", str(tmp_path), "--output", str(output)]) == 0
    function, metadata = export.load_exported(output)
    assert metadata["margin"] == [20, 20] and metadata["model"]["name"] == "unet"
    x = np.ones((1, 92, 92, 1), np.float32)
    np.testing.assert_allclose(np.asarray(function(x)),
                               _reference(model, variables, x), atol=1e-5)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model"):
        export.load_exported(tmp_path / "missing.jaxexport")
    (tmp_path / "junk.jaxexport").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a jax.export artifact"):
        export.load_exported(tmp_path / "junk.jaxexport")
