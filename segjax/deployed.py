"""Exported models as `predict_fn`s: the runtime side of `segjax.export`.

    deployed = load("model.onnx")      # .onnx, .tflite, a SavedModel directory, .jaxexport
    deployed.predict_fn(tiles)         # (B, *tile, C) float32 -> (B, *out, K) float32 logits
    deployed.metadata                  # what segjax.export stated: shapes, normalisation, ...

The predict function is what `segjax.inference` takes, so an exported model
runs the same sliding window, test-time augmentation and CRF as the JAX
model (`python -m segjax.predict --model model.onnx ...`). Runtimes:
onnxruntime (CPUExecutionProvider) for ONNX, the LiteRT interpreter
(`ai_edge_litert`, else TensorFlow's `tf.lite.Interpreter`) for .tflite,
TensorFlow for a SavedModel, `jax.export` for .jaxexport; each is imported
only when a model of its format is loaded (`pip install segjax[export]`).

A model exported with a fixed batch (ONNX, LiteRT) is fed that many tiles
per call: fewer are padded, more are split. Its fixed tile size must be the
sliding window's (`inference_config` sets config.eval.tile and batch_size to
the exported shape). A model with the normalisation baked in takes raw
pixel values; `inference_config` then makes the host normalisation the
identity (mean 0, std 1/255), so inference passes pixels through.

The metadata is `<model>.json` beside the model (written by segjax.export);
an ONNX model also carries it in its `metadata_props` ("segjax").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import ml_collections
import numpy as np

FORMATS = ("jax", "savedmodel", "tflite", "onnx")
METADATA_KEY = "segjax"


class Deployed(NamedTuple):
    predict_fn: Callable[[np.ndarray], np.ndarray]
    metadata: dict


def format_of(path) -> str:
    """The export format of `path`, from its name (a directory is a SavedModel)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ValueError(f"{path}: a directory that is not a SavedModel (no saved_model.pb)")
        return "savedmodel"
    suffix = path.suffix.lower()
    formats = {".onnx": "onnx", ".tflite": "tflite", ".jaxexport": "jax"}
    if suffix not in formats:
        raise ValueError(f"{path}: unknown exported model type {suffix!r}; expected .onnx, "
                         ".tflite, .jaxexport or a SavedModel directory")
    return formats[suffix]


def metadata_path(path) -> Path:
    return Path(f"{Path(path)}.json")


def read_metadata(path) -> dict:
    """segjax.export's metadata of an exported model ({} when none was written)."""
    sidecar = metadata_path(path)
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    if Path(path).suffix.lower() == ".onnx" and Path(path).is_file():
        import onnx  # pylint: disable=import-outside-toplevel
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
                 .metadata_props}
        if METADATA_KEY in props:
            return json.loads(props[METADATA_KEY])
    return {}


def stored_config(path) -> ml_collections.ConfigDict:
    """The run config an exported model was made from (its metadata's "config")."""
    metadata = read_metadata(path)
    if "config" not in metadata:
        raise ValueError(f"{path}: no segjax metadata with the run's config (expected "
                         f"{metadata_path(path)}); pass --config path/to/config.py")
    return ml_collections.ConfigDict(metadata["config"])


# ----------------------------------------------------------------------------- runtimes


def _onnx_runner(path: Path, threads: int | None):
    try:
        import onnxruntime as ort  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError("running an .onnx model needs onnxruntime: "
                          "pip install 'segjax[export]'") from error
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def _litert():
    """(Interpreter, OpResolverType) of ai_edge_litert, else of TensorFlow's tf.lite."""
    try:
        from ai_edge_litert import interpreter  # pylint: disable=import-outside-toplevel
        return interpreter.Interpreter, interpreter.OpResolverType
    except ImportError:
        try:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
        except ImportError as error:
            raise ImportError("running a .tflite model needs ai-edge-litert (or tensorflow): "
                              "pip install 'segjax[export]'") from error
        return tf.lite.Interpreter, tf.lite.experimental.OpResolverType


def litert_interpreter(model_path: str, threads: int | None = None, *,
                       default_delegates: bool = True):
    """A LiteRT interpreter: ai_edge_litert's, else TensorFlow's tf.lite.Interpreter.
    `default_delegates=False` runs LiteRT's builtin kernels only (no XNNPACK)."""
    interpreter, resolvers = _litert()
    options = {} if default_delegates else {
        "experimental_op_resolver_type": resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return interpreter(model_path=model_path, num_threads=threads or os.cpu_count(), **options)


def allocated_interpreter(model_path: str, threads: int | None = None):
    """A LiteRT interpreter with its tensors allocated: with the default XNNPACK delegate, or
    without it where XNNPACK fails to prepare the model (ai-edge-litert 2.3's XNNPACK rejects
    the REDUCE_MAX over 8-D tensors of a 3D model's 2x2x2 max pooling; the builtin kernels
    run it)."""
    interpreter = litert_interpreter(model_path, threads)
    try:
        interpreter.allocate_tensors()
    except RuntimeError as error:
        if "delegate" not in str(error).lower():
            raise
        interpreter = litert_interpreter(model_path, threads, default_delegates=False)
        interpreter.allocate_tensors()
    return interpreter


def _tflite_runner(path: Path, threads: int | None):
    interpreter = allocated_interpreter(str(path), threads)
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(batch):
        interpreter.set_tensor(source, batch)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return run


def _savedmodel_runner(path: Path, threads: int | None):
    del threads
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    function = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda batch: next(iter(function(tf.constant(batch)).values())).numpy()


def load_exported(path):
    """(function, metadata) of a jax.export artifact; the function maps a batch to logits."""
    import jax  # pylint: disable=import-outside-toplevel
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception as error:  # deserialize raises several types on corrupt data
        raise ValueError(f"{path} is not a jax.export artifact: {error}") from error
    return exported.call, read_metadata(path)


def _jax_runner(path: Path, threads: int | None):
    del threads
    function, _ = load_exported(path)
    return lambda batch: np.asarray(function(batch))


RUNNERS = {"onnx": _onnx_runner, "tflite": _tflite_runner, "savedmodel": _savedmodel_runner,
           "jax": _jax_runner}


# ----------------------------------------------------------------------------- predict_fn


def _fixed(dims: Sequence) -> list[int | None]:
    """Exported dimensions as ints, None where symbolic ('b', '32*h')."""
    return [int(d) if str(d).isdigit() else None for d in dims]


def make_predict_fn(run: Callable[[np.ndarray], np.ndarray], metadata: dict):
    """A `predict_fn` over a runtime call: fixed batches padded or split, fixed tiles checked,
    `output_shape(input_shape)` from the exported margin."""
    input_dims = _fixed(metadata.get("input_shape", ()))
    batch = input_dims[0] if input_dims else None
    fixed_tile = input_dims[1:-1] if input_dims and None not in input_dims[1:-1] else None
    margin = tuple(int(m) for m in metadata.get("margin", ()))
    num_classes = metadata.get("num_classes")

    def call(tiles: np.ndarray) -> np.ndarray:
        tiles = np.ascontiguousarray(tiles, np.float32)
        if fixed_tile is not None and list(tiles.shape[1:-1]) != fixed_tile:
            raise ValueError(f"the exported model takes tiles of {tuple(fixed_tile)}, got "
                             f"{tuple(tiles.shape[1:-1])} (set config.eval.tile to it)")
        if batch is None:
            return np.asarray(run(tiles), np.float32)
        outputs = []
        for start in range(0, tiles.shape[0], batch):
            chunk = tiles[start:start + batch]
            padded = np.zeros((batch, *tiles.shape[1:]), np.float32)
            padded[:len(chunk)] = chunk
            outputs.append(np.asarray(run(padded), np.float32)[:len(chunk)])
        return np.concatenate(outputs)

    def output_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
        count, *spatial, _ = input_shape
        spatial = [s - 2 * m for s, m in zip(spatial, margin or (0,) * len(spatial))]
        return (count, *spatial, int(num_classes))

    if num_classes is not None:
        call.output_shape = output_shape
    return call


def load(path, *, threads: int | None = None) -> Deployed:
    """The predict function and metadata of an exported model (module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no exported model at {path}")
    fmt = format_of(path)
    metadata = read_metadata(path)
    return Deployed(make_predict_fn(RUNNERS[fmt](path, threads), metadata), metadata)


def inference_config(config: ml_collections.ConfigDict, metadata: dict
                     ) -> tuple[ml_collections.ConfigDict, list[str]]:
    """`config` with config.eval.tile / batch_size set to an exported model's fixed input
    shape and, for a model with the normalisation baked in, identity host normalisation;
    and the notes saying what changed."""
    config = ml_collections.ConfigDict(config.to_dict())
    notes = []
    dims = _fixed(metadata.get("input_shape", ()))
    if dims and None not in dims[1:-1]:
        tile = tuple(dims[1:-1])
        if tuple(config.eval.get("tile", ()) or ()) != tile:
            notes.append(f"config.eval.tile set to the exported input size {tile}")
        config.eval.tile = tile
    if dims and dims[0] is not None and int(config.eval.get("batch_size", 0)) != dims[0]:
        notes.append(f"config.eval.batch_size set to the exported batch {dims[0]}")
        config.eval.batch_size = dims[0]
    if (metadata.get("normalization") or {}).get("baked"):
        config.data.normalization = "fixed"
        channels = int(config.data.image_channels)
        config.data.mean = (0.0,) * channels
        config.data.std = (1.0 / 255.0,) * channels
    return config, notes
