"""The one evaluator: a sharded predict function, the metrics pass, and the reports.

The train loop's validation, `python -m segjax.evaluate` and
`python -m segjax.predict` all go through here, so the same checkpoint and
the same `config.eval` options give the same numbers everywhere:

    make_predict_fn(model, variables, mesh, policy)
                                 numpy tiles -> numpy logits; tiles split over the mesh's
                                 'data' axis, padded to a multiple of its size (the padding
                                 never reaches the caller); variables replicated or sharded
                                 (FSDP), the model applied in config.model.dtype
    make_panoptic_fn(model, variables, config, mesh)
                                 for panoptic models (outputs "center" and "offset", and
                                 config.data.panoptic.thing_classes): normalised images ->
                                 Panoptic-DeepLab's post-processed maps, on the device
                                 (`segjax.panoptic.postprocess`); None for other models
    predict_functions(model, variables, config)
                                 both, over the run's mesh and dtype (what the entry points
                                 call after `segjax.checkpoints.load`)
    logits_program / panoptic_program
                                 the programs behind those two (`MeshProgram`): compiled once
                                 per input shape, the variables an argument; the train loop
                                 binds each evaluation's weights to the same program
    evaluate(predict_fn, config, examples, options)
                                 one pass over labelled examples: each image through
                                 `segjax.inference.predict_image` (normalise, sliding window,
                                 TTA, CRF), a confusion matrix counted on the host
                                 (`metrics.host_confusion_matrix`; per channel for a
                                 sigmoid head), the metrics of `segjax.metrics`, the
                                 opt-in boundary metrics of config.eval.metrics
                                 (`segjax.boundary_metrics`, per image), time per image;
                                 optionally the first N
                                 predictions for overlays; with a panoptic_fn also PQ, SQ,
                                 RQ (`segjax.panoptic.quality`) against the examples'
                                 'instance' maps
    write_reports(result, ...)   metrics.json, metrics.md, confusion.png

Pictures (palette, overlays, label PNGs, confusion plot) are in `segjax.visualize`.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from segjax import boundary_metrics, host_memory, inference, metrics as metrics_lib, sharding
from segjax import visualize
from segjax.config import EvalOptions
from segjax.data.normalization import normalize
from segjax.models.policy import ApplyPolicy
from segjax.panoptic import postprocess as panoptic_postprocess
from segjax.panoptic import quality as panoptic_quality

PredictFn = Callable[[np.ndarray], np.ndarray]
PanopticFn = Callable[[np.ndarray], dict]


# ----------------------------------------------------------------------------- predict function


def _logits(variables, images, *, model, policy):
    return policy.apply(model, variables, images, train=False,
                        remat=False)["logits"].astype(np.float32)


def inference_variables(variables) -> dict:
    """The collections inference reads: params, and batch_stats where the model has them."""
    result = {"params": variables["params"]}
    if variables.get("batch_stats"):
        result["batch_stats"] = variables["batch_stats"]
    return result


def _placement(variables, mesh):
    """Each leaf's sharding: its own when it lies on `mesh` (FSDP), else replicated."""
    replicated = sharding.replicated_sharding(mesh)

    def placement(leaf):
        if (isinstance(leaf, jax.Array) and isinstance(leaf.sharding, jax.sharding.NamedSharding)
                and leaf.sharding.mesh == mesh):
            return leaf.sharding
        return replicated

    return jax.tree_util.tree_map(placement, variables)


class MeshProgram:
    """`function(variables, batch)` jitted once over a mesh, called with NumPy batches.

    The program is compiled once per batch shape (and variables layout) and
    takes the variables as an argument, so a training run binds each new set
    of weights to the same compiled program (`bind`). The batch is split over
    the mesh's 'data' axis and padded with zeros to a multiple of its size;
    the padding is cut from every output. Variables already laid out on the
    mesh keep their layout (an FSDP-sharded state is gathered inside each
    call, never stored whole); others are replicated.
    """

    def __init__(self, function, mesh=None):
        self.mesh = mesh if mesh is not None else sharding.make_mesh({"data": -1, "model": 1})
        self.data_size = self.mesh.shape["data"]
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        replicated = sharding.replicated_sharding(self.mesh)

        def gathered_function(variables, batch):
            gathered = jax.tree_util.tree_map(lambda _: replicated, variables)
            return function(jax.lax.with_sharding_constraint(variables, gathered), batch)

        self.compiled = jax.jit(gathered_function, out_shardings=replicated,
                                compiler_options=host_memory.compiler_options())

    def place(self, variables) -> dict:
        """The collections inference reads, as global arrays on the mesh."""
        variables = inference_variables(variables)
        return sharding.place(variables, _placement(variables, self.mesh))

    def padded(self, count: int) -> int:
        return -(-count // self.data_size) * self.data_size

    def __call__(self, variables, tiles: np.ndarray):
        """The outputs for `tiles` as NumPy; `variables` as `place` returns them."""
        tiles = np.asarray(tiles, np.float32)
        batch = np.zeros((self.padded(tiles.shape[0]), *tiles.shape[1:]), np.float32)
        batch[:tiles.shape[0]] = tiles
        global_tiles = jax.make_array_from_callback(batch.shape, self.batch_sharding,
                                                    lambda index: batch[index])
        outputs = self.compiled(variables, global_tiles)
        return jax.tree_util.tree_map(lambda a: sharding.local_value(a)[:tiles.shape[0]],
                                      outputs)

    def output_shape(self, variables, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The first output's shape for a batch of `input_shape`, abstractly (nothing runs)."""
        count, *rest = input_shape
        spec = jax.ShapeDtypeStruct((self.padded(count), *rest), np.float32,
                                    sharding=self.batch_sharding)
        shape = jax.tree_util.tree_leaves(jax.eval_shape(self.compiled, variables, spec))[0].shape
        return (count, *shape[1:])

    def bind(self, variables) -> Callable[[np.ndarray], Any]:
        """`tiles -> outputs` with these variables, carrying `output_shape(input_shape)`."""
        placed = self.place(variables)

        def bound(tiles: np.ndarray):
            return self(placed, tiles)

        bound.output_shape = functools.partial(self.output_shape, placed)
        return bound


def logits_program(model, mesh=None, policy=None) -> MeshProgram:
    """The program of `make_predict_fn`, to bind to one set of weights after another."""
    return MeshProgram(functools.partial(_logits, model=model, policy=policy or ApplyPolicy()),
                       mesh)


def make_predict_fn(model, variables, mesh=None, policy=None) -> PredictFn:
    """A compiled `predict_fn`: a batch (B, *spatial, C) -> float32 logits as NumPy.

    Tiles are split over `mesh`'s 'data' axis (default: every device on
    'data'); a batch whose size does not divide it is padded with zeros and
    the padding is cut from the result. Variables may be replicated or
    sharded (FSDP) on the mesh. `policy` (`segjax.models.policy.ApplyPolicy`,
    e.g. `ApplyPolicy.from_config(config)`) sets the compute dtype. The
    function carries `output_shape(input_shape)`, computed abstractly, which
    the sliding window uses to find a valid-convolution model's margin.
    """
    return logits_program(model, mesh, policy).bind(variables)


def _panoptic_maps(variables, images, *, model, options, policy):
    outputs = policy.apply(model, variables, images, train=False, remat=False)
    return panoptic_postprocess.postprocess(outputs["logits"], outputs["center"],
                                            outputs["offset"], **options)


def thing_classes(config) -> tuple[int, ...]:
    """config.data.panoptic.thing_classes (empty for configs without a panoptic section)."""
    panoptic = (config.get("data") or {}).get("panoptic") or {}
    return tuple(int(c) for c in panoptic.get("thing_classes", ()))


def is_panoptic(model, variables, config) -> bool:
    """True when the config names thing classes and the model returns "center" and "offset"."""
    if not thing_classes(config):
        return False
    shape = (1, *config.data.crop, int(config.data.image_channels))
    outputs = jax.eval_shape(functools.partial(model.apply, train=False),
                             inference_variables(variables),
                             jax.ShapeDtypeStruct(shape, np.float32))
    return {"center", "offset"} <= set(outputs)


def panoptic_program(model, variables, config, mesh=None, policy=None) -> MeshProgram | None:
    """The program of `make_panoptic_fn` (None unless the model is panoptic).

    `variables` (arrays or shapes) only serve to decide that, abstractly,
    once; bind the program to each set of weights.
    """
    if not is_panoptic(model, variables, config):
        return None
    options = panoptic_postprocess.options_from_config(config)
    panoptic_postprocess.check_options(options)
    return MeshProgram(functools.partial(_panoptic_maps, model=model, options=options,
                                         policy=policy or ApplyPolicy()), mesh)


def make_panoptic_fn(model, variables, config, mesh=None, policy=None) -> PanopticFn | None:
    """Normalised images (B, H, W, C) -> post-processed panoptic maps as NumPy, or None.

    The model's forward pass and Panoptic-DeepLab's post-processing (with
    config.eval.panoptic's thresholds) are one jit over `mesh`; the maps are
    those of `segjax.panoptic.postprocess` ("semantic", "panoptic_class",
    "panoptic_instance", ...). Whole images at scale 1: sliding windows and
    test-time augmentation do not apply to the panoptic maps.
    """
    program = panoptic_program(model, variables, config, mesh, policy)
    return program.bind(variables) if program is not None else None


def predict_functions(model, variables, config) -> tuple[PredictFn, PanopticFn | None]:
    """(predict_fn, panoptic_fn) of a model over the run's mesh (config.mesh, default all
    devices) in its config.model.dtype; panoptic_fn is None for non-panoptic models."""
    mesh = sharding.make_mesh(config.get("mesh") or {"data": -1, "model": 1})
    policy = ApplyPolicy.from_config(config)
    return (make_predict_fn(model, variables, mesh, policy),
            make_panoptic_fn(model, variables, config, mesh, policy))


def is_multilabel(options: EvalOptions) -> bool:
    """True for a sigmoid head: predictions and labels are (*spatial, K) channel stacks."""
    return options.activation == "sigmoid"


class _PixelMetrics:
    """The confusion counts of every image: (K, K), or (K, 2, 2) per channel (multi-label)."""

    def __init__(self, num_classes: int, ignore_index: int, multilabel: bool):
        self.num_classes, self.ignore_index, self.multilabel = num_classes, ignore_index, multilabel
        shape = (num_classes, 2, 2) if multilabel else (num_classes, num_classes)
        self.confusion = np.zeros(shape, np.int64)

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        if self.multilabel:
            counts = metrics_lib.host_multilabel_confusion(prediction, label,
                                                           ignore_index=self.ignore_index)
        else:
            counts = metrics_lib.host_confusion_matrix(prediction, label,
                                                       num_classes=self.num_classes,
                                                       ignore_index=self.ignore_index)
        self.confusion += np.asarray(counts, np.int64)

    def result(self, names) -> dict:
        if self.multilabel:
            return metrics_lib.metrics_from_multilabel_confusion(self.confusion, names)
        return metrics_lib.metrics_from_confusion(self.confusion, names)


# ----------------------------------------------------------------------------- the metrics pass


def is_single_pass(options: EvalOptions) -> bool:
    """True when `options` predict each whole image once (no tiles, scales, flips or CRF)."""
    return (not options.tile and tuple(options.scales) == (1.0,) and not options.flip
            and not options.crf)


def panoptic_maps(panoptic_fn: PanopticFn, image: np.ndarray, data_config) -> dict:
    """One raw image's post-processed panoptic maps ((H, W) NumPy arrays)."""
    maps = panoptic_fn(normalize(np.asarray(image), data_config)[None])
    return {key: np.asarray(value)[0] for key, value in maps.items()}


def evaluate(predict_fn: PredictFn, config, examples: Sequence[dict],
             options: EvalOptions | None = None, *, progress: bool = False,
             keep_predictions: int = 0, panoptic_fn: PanopticFn | None = None
             ) -> tuple[dict, list[np.ndarray]]:
    """Metrics over labelled `examples`, and the predicted class maps of the first N of them.

    The result holds `segjax.metrics.metrics_from_confusion`'s metrics (for a
    sigmoid head `metrics_from_multilabel_confusion`'s, the examples' labels
    being channel stacks), the confusion matrix, the metrics of
    config.eval.metrics (`segjax.boundary_metrics`, from each prediction and
    the example's 'spacing' where it has one), the number of images and the
    time per image (the first image, which includes compilation, apart). With `panoptic_fn`
    (`make_panoptic_fn`) every example also needs its 'instance' map, and the
    result adds `segjax.panoptic.quality`'s PQ, SQ and RQ; when `options`
    predict each whole image once, the semantic maps of that same pass give
    the confusion matrix, otherwise `predict_fn` with the test-time options does.
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    options = options if options is not None else EvalOptions.from_config(config)
    num_classes = int(config.model.num_classes)
    ignore_index = int(config.data.ignore_index)
    multilabel = is_multilabel(options)
    if multilabel and panoptic_fn is not None:
        raise ValueError("evaluate: panoptic quality needs a softmax head, not a sigmoid one")
    pixel_metrics = _PixelMetrics(num_classes, ignore_index, multilabel)
    boundary = boundary_metrics.BoundaryMetrics(
        boundary_metrics.BoundaryOptions.from_config(config.get("eval")), num_classes,
        ignore_index=ignore_index, multilabel=multilabel)
    quality = (panoptic_quality.PanopticQuality(num_classes, thing_classes(config),
                                                ignore_index=ignore_index,
                                                class_names=class_names(config))
               if panoptic_fn is not None else None)
    seconds, kept = [], []
    for example in tqdm(examples, desc="evaluate", unit="image", disable=not progress):
        name = example.get("name", "?")
        if example.get("label") is None:
            raise ValueError(f"evaluate: example {name!r} has no label; evaluate a labelled split")
        label = np.asarray(example["label"])
        metrics_lib.validate_labels(label, num_classes, ignore_index, where=f"label of {name}",
                                    multilabel=multilabel)
        start = time.perf_counter()
        prediction = None
        if quality is not None:
            if example.get("instance") is None:
                raise ValueError(f"evaluate: example {name!r} has no 'instance' map; PQ needs a "
                                 "panoptic source (data.source='panoptic_folder' or "
                                 "'panoptic_tfds')")
            maps = panoptic_maps(panoptic_fn, example["image"], config.data)
            quality.update(label, example["instance"], maps["panoptic_class"],
                           maps["panoptic_instance"])
            if is_single_pass(options):
                prediction = maps["semantic"].astype(np.int32)
        if prediction is None:
            prediction, _ = inference.predict_labels(predict_fn, np.asarray(example["image"]),
                                                     config.data, options, num_classes)
        seconds.append(time.perf_counter() - start)
        pixel_metrics.update(prediction, label)
        if boundary:
            boundary.update(prediction, label, example.get("spacing"))
        if len(kept) < keep_predictions:
            kept.append(prediction)
    result = pixel_metrics.result(class_names(config))
    result.update(boundary.result())
    if quality is not None:
        result.update(quality.result())
    result["confusion_matrix"] = pixel_metrics.confusion.tolist()
    result["num_images"] = len(seconds)
    result["seconds"] = float(np.sum(seconds))
    result["seconds_per_image"] = float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))
    result["seconds_first_image"] = float(seconds[0]) if seconds else float("nan")
    return result, kept


def class_names(config) -> tuple[str, ...] | None:
    return tuple(config.data.get("class_names", ())) or None


# ----------------------------------------------------------------------------- reports


def options_record(options: EvalOptions) -> dict:
    return {"tile": list(options.tile), "overlap": options.overlap, "blend": options.blend,
            "scales": list(options.scales), "flip": options.flip, "crf": options.crf,
            "crf_params": vars(options.crf_params) if options.crf else None,
            "activation": options.activation, "thresholds": list(options.thresholds)}


BOUNDARY_LINES = (("boundary_iou", "boundary IoU", True), ("boundary_f", "boundary F-score", True),
                  ("hd95", "HD95 (spacing units)", False), ("nsd", "normalised surface Dice", True))


def markdown_report(result: dict, names: Sequence[str], options: EvalOptions,
                    split: str) -> str:
    table = metrics_lib.format_metrics_table(result, names)
    lines = [f"# Evaluation on {split} ({result['num_images']} images)", "",
             f"- mIoU: {100 * result['miou']:.2f}",
             f"- pixel accuracy: {100 * result['pixel_accuracy']:.2f}",
             f"- mean accuracy: {100 * result['mean_accuracy']:.2f}",
             f"- mean Dice (F1): {100 * result['dice']:.2f}",
             f"- mean precision: {100 * result['mean_precision']:.2f}, mean recall: "
             f"{100 * result['mean_recall']:.2f}",
             f"- frequency-weighted IoU: {100 * result['fw_iou']:.2f}",
             f"- seconds per image: {result['seconds_per_image']:.3f} "
             f"(first, with compilation: {result['seconds_first_image']:.3f})",
             f"- options: scales {list(options.scales)}, flip {options.flip}, "
             f"tile {list(options.tile) or 'whole image'}, crf {options.crf}"
             + (f", sigmoid thresholds {list(options.thresholds) or [0.5]}"
                if is_multilabel(options) else "")]
    lines[8:8] = [f"- {label}: " + (f"{100 * result[key]:.2f}" if percent
                                    else f"{result[key]:.3f}")
                  for key, label, percent in BOUNDARY_LINES if key in result]
    lines += ["", table, ""]
    if "pq" in result:
        lines += [f"Panoptic quality: PQ {100 * result['pq']:.2f}, SQ {100 * result['sq']:.2f}, "
                  f"RQ {100 * result['rq']:.2f} (whole images, post-processing of "
                  "config.eval.panoptic)", "",
                  panoptic_quality.format_pq_table(result, names, result["thing_classes"]), ""]
    return "\n".join(lines)


def write_reports(result: dict, config, options: EvalOptions, split: str,
                  output: Path) -> None:
    """metrics.json (everything), metrics.md (the table), confusion.png (softmax heads:
    a (K, K) matrix to draw) under `output`."""
    output.mkdir(parents=True, exist_ok=True)
    num_classes = int(config.model.num_classes)
    names = list(class_names(config) or [f"class {i}" for i in range(num_classes)])
    record = dict(result, split=split, options=options_record(options))
    (output / "metrics.json").write_text(json.dumps(record, indent=2, allow_nan=True))
    (output / "metrics.md").write_text(markdown_report(result, names, options, split))
    if not is_multilabel(options):
        visualize.plot_confusion(np.asarray(result["confusion_matrix"]), names,
                                 output / "confusion.png")
