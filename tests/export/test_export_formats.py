"""Every 2D family of the canon exported to ONNX and LiteRT, run by onnxruntime and the LiteRT
interpreter, equal to JAX within 1e-4 of the logit scale; No New-Net (3D) too.

The families are experiments/export_canon.py's table (small widths, random weights), each
exported at its two non-square sizes (ONNX and LiteRT take fixed shapes: one export per size).
Each exported model is loaded again with `segjax.deployed` and fed a batch of 2 held-out inputs
(its fixed batch is 1, so the predict function splits them), and compared with the model's own
`apply` in JAX. A family a converter cannot take is listed in BLOCKED with the operation that
blocks it; its test asserts the ExportError names that operation.

The fast run (`make test-export`) covers FAST at the first size (convolutions and max pooling,
transposed convolutions, attention, depthwise convolutions, pyramid pooling), the blocked case
and No New-Net; the sweep of every family at both sizes is slow (`make test-export-slow`).
Needs the export extra (.venv-export); skipped without it.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

# pylint: disable=wrong-import-position
from experiments import export_canon  # noqa: E402
from segjax import deployed, export  # noqa: E402
from segjax.models import registry  # noqa: E402

FORMATS = ("onnx", "tflite")
FAST = ("fcn8s", "linknet", "segformer", "deeplabv3plus", "pspnet")
# (family, format) -> the operation named in the ExportError.
BLOCKED = {("cgnet", "onnx"): "STABLEHLO_REDUCE_WINDOW \\(from CGNet/reduce_window_sum"}
TOLERANCE = 1e-4  # of the logit scale (max |JAX logits|)


@functools.lru_cache(maxsize=None)
def canon_source(name: str) -> export.Source:
    return export_canon.source(name)


def jax_logits(source: export.Source, x: np.ndarray) -> np.ndarray:
    apply = jax.jit(lambda v, x: source.model.apply(v, x, train=False)["logits"])
    return np.asarray(apply(source.variables, x), np.float32)


def held_out(shape, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_matches_jax(path, source: export.Source, x: np.ndarray) -> float:
    """Runs the exported model at `path` on `x`; its logits equal JAX's within TOLERANCE of the
    logit scale. Returns the largest difference."""
    expected = jax_logits(source, x)
    got = deployed.load(path).predict_fn(x)
    assert got.shape == expected.shape
    scale = float(np.max(np.abs(expected)))
    difference = float(np.max(np.abs(got - expected)))
    assert scale > 1e-3, "degenerate logits: the comparison would say nothing"
    assert difference <= TOLERANCE * scale, (
        f"{path.name}: max |exported - JAX| {difference:.3g} > {TOLERANCE:g} x {scale:.3g}")
    return difference


def cases():
    for name in export_canon.CANON:
        for fmt in FORMATS:
            for size_index in (0, 1):
                fast = name in FAST and size_index == 0 or ((name, fmt) in BLOCKED
                                                            and size_index == 0)
                marks = () if fast else (pytest.mark.slow,)
                yield pytest.param(name, fmt, size_index, marks=marks,
                                   id=f"{name}-{fmt}-size{size_index}")


@pytest.mark.parametrize("name, fmt, size_index", cases())
def test_family_exports_and_matches_jax(name, fmt, size_index, tmp_path):
    family = export_canon.CANON[name]
    size = family.sizes[size_index]
    source = canon_source(name)
    output = tmp_path / f"{name}.{fmt}"
    input_shape = (*size, family.channels)
    if (name, fmt) in BLOCKED:
        with pytest.raises(export.ExportError, match=BLOCKED[name, fmt]):
            export.export(source, fmt, output, input_shape, batch=1)
        assert not output.exists()
        return
    metadata = export.export(source, fmt, output, input_shape, batch=1)
    assert metadata["input_shape"] == ["1", *map(str, size), str(family.channels)]
    assert metadata["verification"]["max_abs_diff"] <= metadata["verification"]["tolerance"]
    assert_matches_jax(output, source, held_out((2, *input_shape)))


def test_blocked_families_are_in_the_canon():
    assert {name for name, _ in BLOCKED} <= set(export_canon.CANON)


@pytest.fixture(scope="module")
def nonewnet():
    options = {"name": "nonewnet", "num_classes": 3, "width": 4, "depth": 2}
    model = registry.build(options)
    x = np.zeros((1, 16, 24, 32, 2), np.float32)
    config = export_canon.run_config(export_canon.Family(options, channels=2))
    config.data.crop = (16, 24, 32)
    return export.Source(model, export_canon.random_variables(model, x), config)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nonewnet_3d_exports_and_matches_jax(nonewnet, fmt, tmp_path):
    """A 5-D input (B, D, H, W, C) takes the same SavedModel -> LiteRT (-> ONNX) path: CONV_3D
    and the pooling's REDUCE_MAX are LiteRT builtins, which tf2onnx converts."""
    output = tmp_path / f"nonewnet.{fmt}"
    metadata = export.export(nonewnet, fmt, output, (16, 24, 32, 2), batch=1)
    assert metadata["layout"] == "NDHWC"
    assert metadata["input_shape"] == ["1", "16", "24", "32", "2"]
    assert_matches_jax(output, nonewnet, held_out((2, 16, 24, 32, 2)))


def test_dynamic_shapes_are_refused_for_fixed_shape_formats(tmp_path):
    with pytest.raises(export.ExportError, match="fixed shapes"):
        export.export(canon_source("fcn8s"), "onnx", tmp_path / "m.onnx", (64, 96, 3),
                      size_multiple=32)


def test_a_runtime_failure_in_verification_is_an_export_error(tmp_path, monkeypatch):
    """What the runtime rejects (onnxruntime's own error) comes back as one ExportError line
    naming the runtime, and the export is removed."""
    def failing_runner(path, threads):
        del path, threads
        raise RuntimeError("Non-zero status code returned while running ConvTranspose node. "
                           "Name:'" + "jit(logits)/x;" * 40 + "' Status Message: bad bias")

    monkeypatch.setitem(deployed.RUNNERS, "onnx", failing_runner)
    output = tmp_path / "m.onnx"
    with pytest.raises(export.ExportError,
                       match=r"^onnxruntime cannot run the onnx export: .*ConvTranspose.*bad bias"
                       ) as error:
        export.export(canon_source("fcn8s"), "onnx", output, (64, 96, 3), batch=1)
    assert len(str(error.value)) < 400 and "\n" not in str(error.value)
    assert not output.exists() and not deployed.metadata_path(output).exists()
