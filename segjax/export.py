"""Export a trained model's logits for deployment, checked against JAX: jax, SavedModel, LiteRT, ONNX.

    python -m segjax.export --workdir runs/unet_isbi --output unet.jaxexport
    python -m segjax.export --workdir runs/deeplab --format onnx --output deeplab.onnx
    python -m segjax.export --checkpoint runs/x/checkpoints_best/variables --format tflite \\
        --output m.tflite --input_shape 512,512,3 --batch 1 --bake_normalization
    python -m segjax.export --workdir runs/x --format savedmodel --output m_savedmodel \\
        --dynamic --size_multiple 32

What is exported is `x -> model.apply(variables, x)["logits"]` in float32
with the variables as constants: a batch (B, *spatial, C) of normalised
float32 images maps to float32 logits (B, *out, K). A bfloat16 model
(config.model.dtype) is exported as float32 (a one-line note says so).
With --bake_normalization the input is raw pixel values (0..255, float32)
and the graph normalises them as config.data says ('fixed' normalisation
only: 'zscore' needs each whole image's statistics); otherwise the
normalisation is stated in the metadata and applied by the caller.
Panoptic models export their semantic logits (the centre/offset heads and the
post-processing are not exported). Volumetric models (a 5-D input, No New-Net)
export to every format by the same path.

Formats (`--format`):
  jax         `jax.export` StableHLO (`<output>`, any name); needs only jax to run
  savedmodel  a TensorFlow SavedModel directory through `jax2tf` (native
              serialization: an XlaCallModule op; runs in TensorFlow with XLA)
  tflite      LiteRT flatbuffer: that SavedModel through the TensorFlow Lite
              converter, which lowers the StableHLO to TFLite builtin ops
  onnx        that LiteRT model through tf2onnx (`from_tflite`), with TensorFlow
              Select ops mapped to ONNX Where (tf2onnx's default arithmetic
              select turns an inf in the unselected branch into NaN)

Why ONNX goes through LiteRT (docs/export.md has the evidence): with jax
0.10.2 jax2tf only serializes natively (graph-mode lowering is gone), and
tf2onnx cannot convert the XlaCallModule op (measured); jax2onnx 0.17.1 converted the
canon incorrectly or not at all (DeepLabv3+-MobileNetV2: an invalid graph;
Axial-DeepLab: its max-pool plugin fails), takes 15-25 s for a tiny model,
patches flax and jax process-wide, and requires orbax-checkpoint < 0.11.37
(segjax pins 0.12.8).

Shapes: `--input_shape H,W,C` (default: config.eval.tile, else config.data.crop,
and the image channels); `--batch N` fixes the batch (default: symbolic for
jax and savedmodel, config.eval.batch_size for tflite and onnx, which take
fixed shapes). `--dynamic` makes H and W symbolic multiples of
`--size_multiple` (jax and savedmodel only; LiteRT's converter leaves
transposed convolutions unsized for symbolic shapes); the metadata states
the constraint.

Every export is checked before it is kept (`--verify`, default on): the
artifact is loaded with its runtime (`segjax.deployed`) and run on held-out
random inputs (two non-square sizes for a dynamic export, the second never
seen at export; the export size for fixed shapes) and compared with JAX:
the largest absolute difference must be within 1e-4 of the logit scale
(max |logits| of JAX's output). A conversion that fails names the operation
that blocks it (`ExportError`, one line on the command line).

The TensorFlow formats trace the model with XLA's native convolution
whatever config.runtime.conv_impl says, so the converters see convolutions;
the jax format honours conv_impl. TensorFlow, tf2onnx, onnx, onnxruntime and
ai-edge-litert are the optional extra `pip install 'segjax[export]'`,
imported only here and in `segjax.deployed`.

Metadata: `<output>.json` (and, for ONNX, the model's metadata_props under
"segjax"): input/output shapes and layout, what the input values are, the
normalisation, class names, the output margin (valid convolutions), the
verification's numbers, the converters' versions and the run's config (so
`python -m segjax.predict --model <output>` needs nothing else).

Where the model comes from is `model_source` (--workdir or --checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from segjax import deployed
from segjax.deployed import load_exported  # noqa: F401  (the jax format's loader, as before)

FORMATS = deployed.FORMATS
TOLERANCE = 1e-4          # of the logit scale, for float32 exports
ONNX_OPSET = 17


class ExportError(ValueError):
    """A model that cannot be exported (or whose export differs from JAX); the message says
    which operation or check blocks it."""


@dataclasses.dataclass(frozen=True)
class Source:
    """What is exported: a model, its variables and the run config (data section: the
    normalisation, class names, channels)."""

    model: object
    variables: dict
    config: object


def model_source(values, config) -> Source:
    """The model --workdir or --checkpoint names, built from `config`.

    The one place a new source plugs in: a pretrained preset returns
    `Source(*segjax.pretrained.load(name), config)` here, its normalisation
    already in config.data.
    """
    from segjax import checkpoints, cli  # pylint: disable=import-outside-toplevel
    checkpoint = checkpoints.load(cli.checkpoint_path(values), config)
    return Source(checkpoint.model, checkpoint.variables, config)


# ----------------------------------------------------------------------------- the function


@contextlib.contextmanager
def native_convolutions():
    """Traces segjax's convolutions as XLA convolutions (restored afterwards)."""
    from segjax.ops import conv as conv_ops  # pylint: disable=import-outside-toplevel
    previous = conv_ops.implementation()
    conv_ops.set_default_implementation("native")
    try:
        yield
    finally:
        conv_ops.set_default_implementation(previous)


def float32_variables(variables) -> dict:
    """The inference collections (params, batch_stats) with floating leaves as float32."""
    from segjax.evaluation import inference_variables  # pylint: disable=import-outside-toplevel
    return jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf, np.float32)
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) else np.asarray(leaf),
        inference_variables(variables))


def baked_normalization(data_config) -> Callable:
    """The graph-side normalisation of raw pixels (config.data: 'fixed' only)."""
    from segjax.data import normalization  # pylint: disable=import-outside-toplevel
    method = data_config.get("normalization", "fixed")
    if method != "fixed":
        raise ExportError(f"--bake_normalization: data.normalization={method!r} uses each whole "
                          "image's statistics and cannot be baked into a tile function; export "
                          "without it (predict normalises on the host)")
    return lambda x: normalization.fixed(x, data_config.mean, data_config.std)


def logits_function(model, variables, normalize: Callable | None = None) -> Callable:
    """x -> float32 logits of `model` (float32 compute; variables as constants)."""
    variables = float32_variables(variables)

    def logits(x):
        if normalize is not None:
            x = normalize(x)
        return model.apply(variables, x, train=False)["logits"].astype(jnp.float32)

    return logits


# ----------------------------------------------------------------------------- shapes


def symbolic_dims(input_shape: Sequence[int], batch: int | None,
                  size_multiple: int | None) -> list[str]:
    """The exported input dims as strings: 'b' for a symbolic batch, 'M*h0', 'M*h1' for
    symbolic spatial sizes (multiples of M), digits for fixed ones."""
    *spatial, channels = (int(s) for s in input_shape)
    if batch is not None and batch < 1:
        raise ValueError(f"export: batch must be >= 1, got {batch}")
    dims = ["b" if batch is None else str(int(batch))]
    if size_multiple:
        if any(s % size_multiple for s in spatial):
            raise ValueError(f"export: --input_shape {tuple(spatial)} is not a multiple of "
                             f"--size_multiple {size_multiple}")
        dims += [f"{size_multiple}*h{i}" for i in range(len(spatial))]
    else:
        dims += [str(s) for s in spatial]
    return dims + [str(channels)]


def _spec(dims: Sequence[str]) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(jax.export.symbolic_shape(", ".join(dims)), jnp.float32)


def export_model(model, variables, input_shape: Sequence[int], *, batch: int | None = None,
                 platforms: Sequence[str] | None = None, size_multiple: int | None = None,
                 normalize: Callable | None = None) -> jax.export.Exported:
    """`jax.export` of the logits of `model` for inputs (batch, *input_shape).

    `batch=None` exports a symbolic batch dimension; `size_multiple` symbolic
    spatial sizes that are multiples of it.
    """
    dims = symbolic_dims(input_shape, batch, size_multiple)
    function = logits_function(model, variables, normalize)
    try:
        return jax.export.export(jax.jit(function),
                                 platforms=tuple(platforms) if platforms else None)(_spec(dims))
    except Exception as error:  # shape polymorphism errors come in several types
        raise ExportError(f"jax.export cannot lower the model for input {dims}: "
                          f"{_first_line(error)}") from error


def save_exported(exported: jax.export.Exported, path, metadata: dict | None = None) -> Path:
    """Writes the serialized function to `path` and its metadata to `path`.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(exported.serialize())
    info = dict(metadata or {})
    info.update(input_shape=[str(d) for d in exported.in_avals[0].shape],
                output_shape=[str(d) for d in exported.out_avals[0].shape],
                platforms=list(exported.platforms), format="jax")
    _write_metadata(path, info)
    return path


# ----------------------------------------------------------------------------- TensorFlow formats


def _import(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(f"export to TensorFlow/LiteRT/ONNX needs {module.split('.')[0]}: "
                          "pip install 'segjax[export]'") from error


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n")[:1]).strip()
    return text[:400] or type(error).__name__


def _tf_signature(tf, dims: Sequence[str]):
    return tf.TensorSpec([int(d) if d.isdigit() else None for d in dims], tf.float32,
                         name="images")


def to_savedmodel(function: Callable, dims: Sequence[str], path) -> Path:
    """`function` through jax2tf (native serialization) as a SavedModel directory at `path`."""
    tf = _import("tensorflow")
    jax2tf = _import("jax.experimental.jax2tf")
    polymorphic = None if all(d.isdigit() for d in dims) else "(" + ", ".join(
        d if not d.isdigit() else "_" for d in dims) + ")"
    try:
        converted = tf.function(
            jax2tf.convert(function, polymorphic_shapes=[polymorphic], with_gradient=False),
            autograph=False, input_signature=[_tf_signature(tf, dims)])
        module = tf.Module()
        module.logits = converted
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        tf.saved_model.save(module, str(path),
                            signatures={"serving_default": converted.get_concrete_function()})
    except Exception as error:
        raise ExportError(f"jax2tf cannot convert the model for input {list(dims)}: "
                          f"{_first_line(error)}") from error
    return path


# MLIR diagnostics: the JAX op path in a location, and the op the converter rejects.
_JAX_OP = re.compile(r'loc\((?:callsite\()?"jit\([^)]*\)/(?P<path>[^"]+)"')
_MLIR_OP = re.compile(r"'(?P<op>[a-z_]+\.[A-Za-z0-9_.]+)' op")
_SOURCE = re.compile(r'"(?P<file>[^"]*segjax/[^"]+\.py)":(?P<line>\d+)')


def blocking_operation(message: str) -> str:
    """'<jax op> (<converter op>) at <segjax file:line>' from a converter's error message."""
    error_lines = [line for line in message.splitlines() if "error:" in line] or [message]
    line = error_lines[0]
    parts = []
    jax_op = _JAX_OP.search(line)
    if jax_op:
        parts.append(jax_op.group("path").split("/")[-1])
    mlir = _MLIR_OP.search(line) or _MLIR_OP.search(message)
    if mlir:
        parts.append(f"({mlir.group('op')})" if parts else mlir.group("op"))
    source = _SOURCE.search(line)
    where = f" at {source.group('file').split('segjax/', 1)[-1]}:{source.group('line')}" \
        if source else ""
    reason = line.split("error:", 1)[-1].strip()[:200]
    return f"{' '.join(parts) or 'an operation'}{where}: {reason}"


def to_tflite(savedmodel: Path, path) -> Path:
    """A SavedModel (fixed shapes) through the TensorFlow Lite converter, written to `path`."""
    tf = _import("tensorflow")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # ConverterError, or the importer's own errors
        raise ExportError(f"the LiteRT converter rejects {blocking_operation(str(error))}"
                          ) from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flatbuffer)
    return path


def _select_as_where(ctx, node, name, args):  # tf2onnx's old-style custom handler
    del ctx, name, args
    node.type = "Where"


STANDARD_DOMAINS = ("", "ai.onnx")
_UNKNOWN_LITERT_OP = re.compile(r"Can't lookup value (?P<code>\d+) for tflite enum BuiltinOperator")


def litert_operator_sites(tflite: Path, code: int) -> tuple[str, list[str]]:
    """The name of LiteRT builtin operator `code` and the JAX op paths of its outputs in the
    model (the converter names tensors after the JAX ops they come from)."""
    from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=import-outside-toplevel
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(Path(tflite).read_bytes(), 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    sites = []
    for subgraph in model.subgraphs:
        for operator in subgraph.operators:
            if codes[operator.opcodeIndex] == code:
                name = subgraph.tensors[operator.outputs[0]].name
                sites.append(_jax_op_path(name.decode() if isinstance(name, bytes) else name))
    return names.get(code, f"builtin operator {code}"), sites


def _jax_op_path(tensor_name: str) -> str:
    """'CGNet/reduce_window_sum' from a converted tensor's name 'jit(logits)/CGNet/...;...'."""
    parts = tensor_name.split(";")
    path = next((part for part in parts if part.startswith("jit(")), parts[0])
    return re.sub(r"^jit\([^)]*\)/", "", path)


def _tf2onnx_error(tflite: Path, error: Exception) -> str:
    """tf2onnx's failure, naming the LiteRT op (and where the model uses it) it lacks."""
    unknown = _UNKNOWN_LITERT_OP.search(str(error))
    if not unknown:
        return f"tf2onnx cannot convert the LiteRT model: {_first_line(error)}"
    name, sites = litert_operator_sites(tflite, int(unknown.group("code")))
    where = f" (from {', '.join(sorted(set(sites)))})" if sites else ""
    return f"tf2onnx {tf2onnx_version()} has no conversion of the LiteRT op {name}{where}"


def tf2onnx_version() -> str:
    return getattr(_import("tf2onnx"), "__version__", "?")


def _one_dimensional_biases(proto) -> None:
    """Reshapes (1, ..., 1, M) bias initializers of Conv/ConvTranspose nodes to (M,) in place
    (and drops the initializers no node uses any more): tf2onnx keeps LiteRT's fused
    TRANSPOSE_CONV bias 4-D, which onnxruntime rejects."""
    numpy_helper = _import("onnx.numpy_helper")
    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    replaced = set()
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 3:
            continue
        bias = initializers.get(node.input[2])
        if bias is None or len(bias.dims) == 1:
            continue
        flat_name = f"{bias.name}/1d"
        if flat_name not in initializers:  # a bias two nodes share is reshaped once
            flat = numpy_helper.from_array(numpy_helper.to_array(bias).reshape(-1), flat_name)
            proto.graph.initializer.append(flat)
            initializers[flat_name] = flat
        node.input[2] = flat_name
        replaced.add(bias.name)
    used = {name for node in proto.graph.node for name in node.input} | {
        output.name for output in proto.graph.output}
    unused = [tensor for tensor in proto.graph.initializer
              if tensor.name in replaced and tensor.name not in used]
    for tensor in unused:
        proto.graph.initializer.remove(tensor)


def to_onnx(tflite: Path, path) -> Path:
    """A LiteRT model through tf2onnx (Select as Where), checked, written to `path`."""
    tf2onnx = _import("tf2onnx")
    onnx = _import("onnx")
    handlers = {"Select": (_select_as_where, []), "SelectV2": (_select_as_where, [])}
    try:
        with warnings.catch_warnings():  # tf2onnx reads the model with tf.lite.Interpreter
            warnings.filterwarnings("ignore", "(?s).*tf.lite.Interpreter is deprecated")
            proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=ONNX_OPSET,
                                                   custom_op_handlers=handlers)
    except Exception as error:
        raise ExportError(_tf2onnx_error(tflite, error)) from error
    _one_dimensional_biases(proto)
    unconverted = sorted({node.op_type for node in proto.graph.node
                          if node.domain not in STANDARD_DOMAINS or node.op_type.startswith("TFL_")})
    if unconverted:
        raise ExportError(f"tf2onnx has no ONNX operation for LiteRT op(s) {unconverted}")
    try:
        onnx.checker.check_model(proto)
    except Exception as error:
        raise ExportError(f"the converted ONNX model is invalid: {_first_line(error)}") from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


# ----------------------------------------------------------------------------- verification


def held_out_inputs(dims: Sequence[str], sizes: Sequence[Sequence[int]], *, pixels: bool,
                    seed: int = 20260) -> list[np.ndarray]:
    """Random inputs of each spatial size (batch: the fixed one, else 2): normalised-range
    normal draws, or pixel values in [0, 255] for a baked normalisation."""
    rng = np.random.default_rng(seed)
    batch = int(dims[0]) if dims[0].isdigit() else 2
    channels = int(dims[-1])
    inputs = []
    for size in sizes:
        shape = (batch, *size, channels)
        inputs.append((rng.uniform(0, 255, shape) if pixels else rng.normal(size=shape))
                      .astype(np.float32))
    return inputs


def compare(predict_fn: Callable, reference: Callable, inputs: Sequence[np.ndarray]) -> dict:
    """Max |exported - JAX| and the logit scale (max |JAX logits|) over `inputs`."""
    difference, scale = 0.0, 0.0
    for x in inputs:
        expected = np.asarray(reference(x), np.float32)
        got = np.asarray(predict_fn(x), np.float32)
        if got.shape != expected.shape:
            raise ExportError(f"the exported model gives shape {got.shape}, JAX {expected.shape}")
        if not np.all(np.isfinite(got)):
            difference = float("inf")
        else:
            difference = max(difference, float(np.max(np.abs(got - expected))))
        scale = max(scale, float(np.max(np.abs(expected))))
    return {"max_abs_diff": difference, "logit_scale": scale,
            "tolerance": TOLERANCE * scale, "sizes": [list(x.shape[1:-1]) for x in inputs]}


def check(result: dict, fmt: str) -> None:
    if not result["max_abs_diff"] <= result["tolerance"]:
        raise ExportError(f"the {fmt} export differs from JAX by {result['max_abs_diff']:.3g} "
                          f"(tolerance {TOLERANCE:g} x logit scale {result['logit_scale']:.3g})")


# ----------------------------------------------------------------------------- export


def converter_versions(fmt: str) -> dict:
    versions = {"jax": jax.__version__}
    modules = {"savedmodel": ("tensorflow",), "tflite": ("tensorflow",),
               "onnx": ("tensorflow", "tf2onnx", "onnx")}.get(fmt, ())
    for module in modules:
        versions[module] = getattr(_import(module), "__version__", "?")
    return versions


def output_margin(function: Callable, input_shape: Sequence[int]) -> list[int]:
    out = jax.eval_shape(function, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    return [(i - o) // 2 for i, o in zip(input_shape[:-1], out.shape[1:-1])]


def base_metadata(source: Source, fmt: str, *, normalize: bool) -> dict:
    config = source.config
    data = config.get("data", {})
    model_config = config.model.to_dict() if hasattr(config.model, "to_dict") \
        else dict(config.model)
    metadata = {"format": fmt, "model": model_config,
                "num_classes": int(config.model.num_classes),
                "image_channels": int(data.get("image_channels", 3)),
                "layout": "NHWC" if len(tuple(data.get("crop", (0, 0)))) == 2 else "NDHWC",
                "input_values": "pixels 0..255 (float32)" if normalize
                else "normalised (see normalization)",
                "normalization": {"method": data.get("normalization", "fixed"),
                                  "mean": list(data.get("mean", ())),
                                  "std": list(data.get("std", ())), "baked": normalize},
                "mean": list(data.get("mean", ())), "std": list(data.get("std", ())),
                "class_names": list(data.get("class_names", ())),
                "config": json.loads(config.to_json_best_effort())
                if hasattr(config, "to_json_best_effort") else {}}
    dtype = str(config.model.get("dtype", "float32") or "float32")
    if dtype != "float32":
        metadata["note"] = f"config.model.dtype={dtype} exported as float32"
    return metadata


def _write_metadata(path: Path, metadata: dict) -> None:
    deployed.metadata_path(path).write_text(json.dumps(metadata, indent=2))


def _embed_onnx_metadata(path: Path, metadata: dict) -> None:
    onnx = _import("onnx")
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = deployed.METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, str(path))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    deployed.metadata_path(path).unlink(missing_ok=True)


def _convert_tensorflow(function: Callable, fmt: str, dims: Sequence[str], output: Path) -> None:
    """SavedModel, then (tflite, onnx) LiteRT, then (onnx) ONNX, at `output`."""
    with tempfile.TemporaryDirectory() as scratch:
        savedmodel = output if fmt == "savedmodel" else Path(scratch) / "savedmodel"
        to_savedmodel(function, dims, savedmodel)
        if fmt == "savedmodel":
            return
        tflite = output if fmt == "tflite" else Path(scratch) / "model.tflite"
        to_tflite(savedmodel, tflite)
        if fmt == "onnx":
            to_onnx(tflite, output)


def verify_export(output: Path, fmt: str, metadata: dict, reference: Callable,
                  sizes: Sequence[Sequence[int]], pixels: bool) -> dict:
    """Runs the artifact with its runtime on held-out inputs; the comparison with JAX."""
    inputs = held_out_inputs(metadata["input_shape"], sizes, pixels=pixels)
    try:
        predict_fn = deployed.make_predict_fn(deployed.RUNNERS[fmt](output, None), metadata)
        return compare(predict_fn, reference, inputs)
    except ExportError:
        raise
    except Exception as error:  # the runtime's own errors (onnxruntime, LiteRT, TensorFlow)
        raise ExportError(f"{RUNTIMES[fmt]} cannot run the {fmt} export: "
                          f"{_runtime_reason(error)}") from error


RUNTIMES = {"jax": "jax", "savedmodel": "TensorFlow", "tflite": "the LiteRT interpreter",
            "onnx": "onnxruntime"}


def _runtime_reason(error: Exception) -> str:
    """A runtime's error in one line, its node names (long JAX op path lists) shortened."""
    text = " ".join(str(error).split())
    return re.sub(r"Name:'([^';]{0,80})[^']*'", r"Name:'\1...'", text)[:400]


def export(source: Source, fmt: str, output, input_shape: Sequence[int], *,
           batch: int | None = None, size_multiple: int | None = None,
           normalize: bool = False, verify: bool = True, platforms=None,
           verify_sizes: Sequence[Sequence[int]] | None = None) -> dict:
    """Exports `source` as `fmt` to `output` and returns its metadata (module docstring).

    An export that fails verification is removed and raises `ExportError`.
    `verify_sizes`: the held-out spatial sizes of a dynamic export (default:
    the export size and that plus 2 x size_multiple on each axis).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {fmt!r}")
    config = source.config
    input_shape = tuple(int(s) for s in input_shape)
    if fmt in ("tflite", "onnx"):
        if size_multiple:
            raise ExportError(f"--dynamic: {fmt} exports take fixed shapes (the LiteRT converter "
                              "leaves transposed convolutions unsized for symbolic sizes); use "
                              "--format savedmodel or jax")
        if batch is None:
            batch = int((config.get("eval") or {}).get("batch_size", 1) or 1)
    normalizer = baked_normalization(config.data) if normalize else None
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = base_metadata(source, fmt, normalize=normalize)
    dims = symbolic_dims(input_shape, batch, size_multiple)
    reference = jax.jit(logits_function(source.model, source.variables, normalizer))
    if fmt == "jax":
        exported = export_model(source.model, source.variables, input_shape, batch=batch,
                                platforms=platforms, size_multiple=size_multiple,
                                normalize=normalizer)
        out_dims = [str(d) for d in exported.out_avals[0].shape]
        output.write_bytes(exported.serialize())
        metadata["platforms"] = list(exported.platforms)
    else:
        with native_convolutions():
            function = logits_function(source.model, source.variables, normalizer)
            _convert_tensorflow(function, fmt, dims, output)
        out = jax.eval_shape(reference, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
        out_dims = [dims[0], *(str(o) for o in out.shape[1:])]
    metadata.update(input_shape=dims, output_shape=out_dims,
                    margin=output_margin(reference, input_shape),
                    converters=converter_versions(fmt))
    if size_multiple:
        metadata["constraint"] = f"height and width: multiples of {size_multiple}"
        metadata["output_shape"] = [dims[0], "symbolic", out_dims[-1]]
    if verify:
        sizes = [input_shape[:-1]]
        if size_multiple:
            sizes = [tuple(s) for s in verify_sizes] if verify_sizes else [
                input_shape[:-1], tuple(s + 2 * size_multiple for s in input_shape[:-1])]
        try:
            result = verify_export(output, fmt, metadata, reference, sizes, normalize)
            metadata["verification"] = result
            check(result, fmt)
        except Exception:
            _remove(output)
            raise
    _write_metadata(output, metadata)
    if fmt == "onnx":
        _embed_onnx_metadata(output, metadata)
    return metadata


def _default_input_shape(config) -> tuple[int, ...]:
    from segjax.config import EvalOptions  # pylint: disable=import-outside-toplevel
    spatial = EvalOptions.from_config(config).tile or tuple(config.data.crop)
    return (*spatial, int(config.data.image_channels))


def define_flags(values) -> None:
    from absl import flags  # pylint: disable=import-outside-toplevel

    from segjax import cli  # pylint: disable=import-outside-toplevel
    cli.define_checkpoint_flags(values)
    flags.DEFINE_string("output", None, "Artifact path (metadata at <path>.json).",
                        flag_values=values)
    flags.DEFINE_enum("format", "jax", list(FORMATS), "Export format.", flag_values=values)
    flags.DEFINE_list("input_shape", None, "Spatial size and channels, e.g. 572,572,1 "
                      "(default: config.eval.tile or config.data.crop, and the image channels).",
                      flag_values=values)
    flags.DEFINE_integer("batch", None, "Fixed batch size (default: symbolic for jax and "
                         "savedmodel, config.eval.batch_size for tflite and onnx).",
                         lower_bound=1, flag_values=values)
    flags.DEFINE_bool("dynamic", False, "Symbolic height and width (jax, savedmodel), "
                      "multiples of --size_multiple.", flag_values=values)
    flags.DEFINE_integer("size_multiple", 32, "With --dynamic: height and width must be "
                         "multiples of this.", lower_bound=1, flag_values=values)
    flags.DEFINE_bool("bake_normalization", False, "Input raw pixels (0..255); the graph "
                      "normalises them (config.data, 'fixed' only).", flag_values=values)
    flags.DEFINE_bool("verify", True, "Compare the artifact with JAX on held-out inputs.",
                      flag_values=values)
    flags.DEFINE_list("platforms", None, "jax format: e.g. cpu,cuda,tpu (default: the current "
                      "backend).", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
    # segjax's model code is imported here only: an exported artifact loads without it.
    from segjax import cli, runtime  # pylint: disable=import-outside-toplevel
    values, config = cli.parse(argv, define_flags, doc=__doc__, program="python -m segjax.export",
                               default_config=cli.run_config)
    if not values.output:
        raise cli.UsageError("--output is required")
    runtime.configure(config)
    source = model_source(values, config)
    input_shape = (tuple(int(v) for v in values.input_shape) if values.input_shape
                   else _default_input_shape(config))
    try:
        metadata = export(source, values.format, values.output, input_shape, batch=values.batch,
                          size_multiple=values.size_multiple if values.dynamic else None,
                          normalize=values.bake_normalization, verify=values.verify,
                          platforms=values.platforms)
    except ExportError as error:
        raise cli.UsageError(f"cannot export {config.model.name} as {values.format}: {error}"
                             ) from None
    if "note" in metadata:
        print(f"note: {metadata['note']}")
    checked = metadata.get("verification")
    detail = (f"; max |difference| from JAX {checked['max_abs_diff']:.2g} at logit scale "
              f"{checked['logit_scale']:.3g}" if checked else "")
    print(f"exported {config.model.name} ({values.format}) {tuple(metadata['input_shape'])} -> "
          f"{tuple(metadata['output_shape'])} to {values.output}{detail}")
    return 0


if __name__ == "__main__":
    from segjax import cli
    cli.run(main)
