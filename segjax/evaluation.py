"""The one evaluator: a sharded predict function, the metrics pass, and the reports.

The train loop's validation, `python -m segjax.evaluate` and
`python -m segjax.predict` all go through here, so the same checkpoint and
the same `config.eval` options give the same numbers everywhere:

    restore(path)                model + weights + config from a run or a weights file,
                                 with `config.runtime` applied (segjax.runtime)
    load_model(path)             the same, and its predict function
    make_predict_fn(model, variables, mesh, policy)
                                 numpy tiles -> numpy logits; tiles split over the mesh's
                                 'data' axis, padded to a multiple of its size (the padding
                                 never reaches the caller); variables replicated or sharded
                                 (FSDP), the model applied in config.model.dtype
    options_from_config(config)  config.eval (sliding window, scales, flip, CRF) as EvalOptions
    evaluate(predict_fn, config, examples, options)
                                 one pass over labelled examples: each image through
                                 `segjax.inference.predict_image` (normalise, sliding window,
                                 TTA, CRF), a confusion matrix, the metrics of
                                 `segjax.metrics`, time per image; optionally the first N
                                 predictions for overlays
    write_reports(result, ...)   metrics.json, metrics.md, confusion.png

Pictures (palette, overlays, label PNGs, confusion plot) are in `segjax.visualize`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from segjax import host_memory, inference, metrics as metrics_lib, runtime, sharding, visualize
from segjax import weights
from segjax.models.policy import ApplyPolicy

PredictFn = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- predict function


def _logits(variables, images, *, model, policy, gathered):
    variables = jax.lax.with_sharding_constraint(variables, gathered)
    return policy.apply(model, variables, images, train=False,
                        remat=False)["logits"].astype(np.float32)


def inference_variables(variables) -> dict:
    """The collections inference reads: params, and batch_stats where the model has them."""
    result = {"params": variables["params"]}
    if variables.get("batch_stats"):
        result["batch_stats"] = variables["batch_stats"]
    return result


def _placement(variables, mesh):
    """Each leaf's sharding: its own when it lies on `mesh`'s devices (FSDP), else replicated."""
    replicated = sharding.replicated_sharding(mesh)

    def placement(leaf):
        if (isinstance(leaf, jax.Array) and isinstance(leaf.sharding, jax.sharding.NamedSharding)
                and leaf.sharding.mesh == mesh):
            return leaf.sharding
        return replicated

    return jax.tree_util.tree_map(placement, variables)


def make_predict_fn(model, variables, mesh=None, policy=None) -> PredictFn:
    """A compiled `predict_fn`: a batch (B, *spatial, C) -> float32 logits as NumPy.

    Tiles are split over `mesh`'s 'data' axis (default: every device on
    'data'); a batch whose size does not divide it is padded with zeros and
    the padding is cut from the result. Variables already laid out on the
    mesh keep their layout (an FSDP-sharded state is gathered inside each
    call, never stored whole); others are replicated. `policy`
    (`segjax.models.policy.ApplyPolicy`, e.g. from_config) sets the compute
    dtype. The function carries `output_shape(input_shape)`, computed
    abstractly, which the sliding window uses to find a valid-convolution
    model's margin.
    """
    mesh = mesh if mesh is not None else sharding.make_mesh({"data": -1, "model": 1})
    data_size = mesh.shape["data"]
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated_sharding(mesh)
    variables = inference_variables(variables)
    placement = _placement(variables, mesh)
    variables = sharding.place(variables, placement)
    gathered = jax.tree_util.tree_map(lambda _: replicated, placement)
    logits_fn = jax.jit(functools.partial(_logits, model=model, policy=policy or ApplyPolicy(),
                                          gathered=gathered),
                        in_shardings=(placement, batch_sharding), out_shardings=replicated,
                        compiler_options=host_memory.compiler_options())

    def padded(count: int) -> int:
        return -(-count // data_size) * data_size

    def predict_fn(tiles: np.ndarray) -> np.ndarray:
        tiles = np.asarray(tiles, np.float32)
        batch = np.zeros((padded(tiles.shape[0]), *tiles.shape[1:]), np.float32)
        batch[:tiles.shape[0]] = tiles
        global_tiles = jax.make_array_from_callback(batch.shape, batch_sharding,
                                                    lambda index: batch[index])
        logits = logits_fn(variables, global_tiles)
        return sharding.local_value(logits)[:tiles.shape[0]]

    def output_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
        count, *rest = input_shape
        spec = jax.ShapeDtypeStruct((padded(count), *rest), np.float32)
        shape = jax.eval_shape(logits_fn, variables, spec).shape
        return (count, *shape[1:])

    predict_fn.output_shape = output_shape
    return predict_fn


@dataclasses.dataclass
class LoadedModel:
    """What `load_model` restores: the model, its weights, its run's config, a predict_fn."""

    model: Any
    variables: dict
    config: Any
    predict_fn: PredictFn


def restore(path, *, conv_impl: str | None = None) -> tuple[Any, dict, Any]:
    """(model, variables, config) from a workdir, a checkpoint or a variables file.

    The architecture comes from the checkpoint's own stored model config; the
    data and evaluation sections from the run's config.json when there is one.
    `config.runtime` is applied (with `conv_impl` overriding it) before
    anything is compiled.
    """
    model, variables, config = weights.restore_for_inference(path)
    runtime.configure(config, conv_impl=conv_impl)
    return model, variables, config


def load_model(path, *, conv_impl: str | None = None) -> LoadedModel:
    """`restore`, and a predict_fn over the run's mesh (config.mesh, default all devices)."""
    model, variables, config = restore(path, conv_impl=conv_impl)
    mesh = sharding.make_mesh(config.get("mesh") or {"data": -1, "model": 1})
    return LoadedModel(model, variables, config,
                       make_predict_fn(model, variables, mesh, ApplyPolicy.from_config(config)))


def options_from_config(config, **overrides) -> inference.EvalOptions:
    """`config.eval` as EvalOptions; overrides that are None keep the config's value."""
    return inference.EvalOptions.from_config(config.get("eval"), **overrides)


# ----------------------------------------------------------------------------- the metrics pass


def evaluate(predict_fn: PredictFn, config, examples: Sequence[dict],
             options: inference.EvalOptions | None = None, *, progress: bool = False,
             keep_predictions: int = 0) -> tuple[dict, list[np.ndarray]]:
    """Metrics over labelled `examples`, and the predicted class maps of the first N of them.

    The result holds `segjax.metrics.metrics_from_confusion`'s metrics, the
    confusion matrix, the number of images and the time per image (the first
    image, which includes compilation, apart).
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    options = options if options is not None else options_from_config(config)
    num_classes = int(config.model.num_classes)
    ignore_index = int(config.data.ignore_index)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    seconds, kept = [], []
    for example in tqdm(examples, desc="evaluate", unit="image", disable=not progress):
        name = example.get("name", "?")
        if example.get("label") is None:
            raise ValueError(f"evaluate: example {name!r} has no label; evaluate a labelled split")
        label = np.asarray(example["label"])
        metrics_lib.validate_labels(label, num_classes, ignore_index, where=f"label of {name}")
        start = time.perf_counter()
        prediction, _ = inference.predict_labels(predict_fn, np.asarray(example["image"]),
                                                 config.data, options, num_classes)
        seconds.append(time.perf_counter() - start)
        confusion += np.asarray(metrics_lib.confusion_matrix(
            prediction[None], label[None], num_classes=num_classes, ignore_index=ignore_index),
            np.int64)
        if len(kept) < keep_predictions:
            kept.append(prediction)
    result = metrics_lib.metrics_from_confusion(confusion, class_names(config))
    result["confusion_matrix"] = confusion.tolist()
    result["num_images"] = len(seconds)
    result["seconds"] = float(np.sum(seconds))
    result["seconds_per_image"] = float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))
    result["seconds_first_image"] = float(seconds[0]) if seconds else float("nan")
    return result, kept


def class_names(config) -> tuple[str, ...] | None:
    return tuple(config.data.get("class_names", ())) or None


# ----------------------------------------------------------------------------- reports


def options_record(options: inference.EvalOptions) -> dict:
    return {"tile": list(options.tile), "overlap": options.overlap, "blend": options.blend,
            "scales": list(options.scales), "flip": options.flip, "crf": options.crf,
            "crf_params": vars(options.crf_params) if options.crf else None}


def markdown_report(result: dict, names: Sequence[str], options: inference.EvalOptions,
                    split: str) -> str:
    table = metrics_lib.format_metrics_table(result, names)
    lines = [f"# Evaluation on {split} ({result['num_images']} images)", "",
             f"- mIoU: {100 * result['miou']:.2f}",
             f"- pixel accuracy: {100 * result['pixel_accuracy']:.2f}",
             f"- mean accuracy: {100 * result['mean_accuracy']:.2f}",
             f"- mean Dice: {100 * result['dice']:.2f}",
             f"- seconds per image: {result['seconds_per_image']:.3f} "
             f"(first, with compilation: {result['seconds_first_image']:.3f})",
             f"- options: scales {list(options.scales)}, flip {options.flip}, "
             f"tile {list(options.tile) or 'whole image'}, crf {options.crf}", "", table, ""]
    return "\n".join(lines)


def write_reports(result: dict, config, options: inference.EvalOptions, split: str,
                  output: Path) -> None:
    """metrics.json (everything), metrics.md (the table), confusion.png under `output`."""
    output.mkdir(parents=True, exist_ok=True)
    num_classes = int(config.model.num_classes)
    names = list(class_names(config) or [f"class {i}" for i in range(num_classes)])
    record = dict(result, split=split, options=options_record(options))
    (output / "metrics.json").write_text(json.dumps(record, indent=2, allow_nan=True))
    (output / "metrics.md").write_text(markdown_report(result, names, options, split))
    visualize.plot_confusion(np.asarray(result["confusion_matrix"]), names,
                             output / "confusion.png")
