"""The canon at a small width, one entry per registered 2D family, exported and measured.

    nice -n 10 python experiments/export_canon.py [--size 512] [--families fcn8s,unet]
        [--formats onnx,tflite] [--repeats 5] [--budget_s 0]

`CANON[family]` is a `Family`: a `config.model` dict that builds the
family's network (its registered model, or the generic "segmenter" with the
family's decoder and head) with narrow layers, and the input sizes it
allows: `sizes[0]` is the size the static exports are made at, `sizes[1]` a
second, larger size that a dynamic export never saw. Both are non-square,
and `sizes[1] - sizes[0]` is the step between sizes the family takes.
Every architectural feature of a family (dilations, poolings, attention,
resizes with or without aligned corners, transposed convolutions, Caffe
crops) stays, only widths and block counts shrink. The weights are random
draws (`random_variables`): the export checks compare numbers, not accuracy.

tests/export/test_export_formats.py exports every family to ONNX and LiteRT
at both sizes. Run as a program, this script prints docs/export.md's table:
for each family and format, exported or blocked (by which operation), the
largest difference from JAX within the logit scale, the file size, and the
CPU latency of onnxruntime / the LiteRT interpreter next to JAX's, all on
one batch-1 input of about --size x --size (the family's nearest allowed
size at or below it), in the same process. Install with
`pip install -e '.[export]'` (make test-export's .venv-export).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMATS = ("onnx", "tflite")


class Family(NamedTuple):
    model: dict[str, Any]
    sizes: tuple[tuple[int, int], tuple[int, int]] = ((64, 96), (96, 128))
    channels: int = 3


NUM_CLASSES = 5
# A ResNet with every code path of ResNet-18/34 (stem, max pool, basic blocks, projections).
TINY_RESNET = {"name": "resnet18", "widths": (8, 8, 16, 16), "stage_sizes": (1, 1, 1, 1),
               "stem_width": 8}
TINY_RESNET50 = {"name": "resnet50", "widths": (4, 4, 8, 8), "stage_sizes": (1, 1, 1, 1),
                 "stem_width": 8}
TINY_VGG = {"widths": (4, 8, 8, 16, 16), "fc_features": 16}


def _segmenter(encoder: dict, decoder: dict, **options) -> dict:
    return {"name": "segmenter", "num_classes": NUM_CLASSES, "encoder": encoder,
            "decoder": decoder, **options}


CANON: dict[str, Family] = {
    "fcn8s": Family({"name": "fcn8s", "num_classes": NUM_CLASSES, "encoder_options": TINY_VGG}),
    "deeplabv1": Family(_segmenter({"name": "vgg16", "output_stride": 8, **TINY_VGG},
                                   {"name": "largefov", "features": 16}, align_corners=True)),
    "deeplabv2": Family(_segmenter({**TINY_RESNET50, "output_stride": 8},
                                   {"name": "aspp_l", "num_classes": NUM_CLASSES},
                                   head={"name": "identity"}, align_corners=True)),
    "deeplabv3": Family(_segmenter({**TINY_RESNET50, "output_stride": 16,
                                    "multi_grid": (1,)},
                                   {"name": "deeplabv3", "features": 16})),
    "deeplabv3plus": Family({"name": "deeplabv3plus_mobilenetv2", "num_classes": NUM_CLASSES,
                             "encoder_options": {"width_multiplier": 0.25,
                                                 "include_last_conv": False}}),
    "unet": Family({"name": "unet", "num_classes": NUM_CLASSES, "width": 4, "depth": 3,
                    "padding": "same"}, channels=1),
    "unet_valid": Family({"name": "unet", "num_classes": NUM_CLASSES, "width": 4, "depth": 2,
                          "padding": "valid"}, sizes=((92, 108), (124, 140)), channels=1),
    "unetplusplus": Family({"name": "unetplusplus", "num_classes": NUM_CLASSES,
                            "filters": (4, 8, 8, 16, 16)}, channels=1),
    "linknet": Family(_segmenter(TINY_RESNET, {"name": "linknet", "prefinal_channels": 8})),
    "fpn": Family(_segmenter(TINY_RESNET, {"name": "fpn", "pyramid_channels": 16,
                                           "segmentation_channels": 8, "num_groups": 4},
                             align_corners=True)),
    "pspnet": Family(_segmenter({**TINY_RESNET, "max_stride": 8, "build_unused": True},
                                {"name": "pspnet", "fuse_channels": 16},
                                head={"name": "conv", "kernel_size": 3}, align_corners=True)),
    # PAN's pyramid attention pools the stride-32 map three times: 256 leaves 1x1.
    "pan": Family(_segmenter(TINY_RESNET, {"name": "pan", "features": 8}),
                  sizes=((256, 320), (320, 384))),
    "manet": Family(_segmenter(TINY_RESNET, {"name": "manet", "decoder_channels": (16, 8, 8, 8, 8),
                                             "pab_channels": 8})),
    "upernet": Family(_segmenter(TINY_RESNET, {"name": "upernet", "features": 16})),
    "cgnet": Family({"name": "cgnet", "num_classes": NUM_CLASSES, "stage2_blocks": 2,
                     "stage3_blocks": 2}),
    "segformer": Family(_segmenter({"name": "mit_b0", "widths": (8, 16, 24, 32),
                                    "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 2)},
                                   {"name": "segformer", "features": 16})),
    "dpt": Family(_segmenter({"name": "dpt_vit_b16", "hidden_size": 32, "depth": 4,
                              "num_heads": 2, "mlp_dim": 64, "out_layers": (0, 1, 2, 3),
                              "reassemble_features": (8, 8, 16, 16), "image_size": 64},
                             {"name": "dpt", "features": 16},
                             head={"name": "fcn", "channels": 8}, align_corners=True)),
    "axial_deeplab": Family({"name": "axial_deeplab_s", "num_classes": NUM_CLASSES,
                             "encoder_options": {"width_multiplier": 0.125, "depths": (1, 1, 1, 1)},
                             "decoder_options": {"aspp_features": 16, "semantic_features": 16,
                                                 "semantic_low_level_features": (8, 8)}}),
    "panoptic_deeplab": Family({"name": "panoptic_deeplab_resnet50", "num_classes": NUM_CLASSES,
                                "encoder_options": {k: v for k, v in TINY_RESNET50.items()
                                                    if k != "name"},
                                "decoder_options": {
                                    "aspp_features": 16, "semantic_features": 16,
                                    "instance_features": 8, "semantic_low_level_features": (8, 8),
                                    "instance_low_level_features": (8, 4),
                                    "instance_head_channels": 8}}),
}


# ----------------------------------------------------------------------------- models


def random_variables(model, x, seed: int = 0) -> dict:
    """Variables of `model` for input `x` without running its init: the shapes of
    `jax.eval_shape(model.init, ...)` filled with NumPy draws (kernels N(0, 1/fan_in),
    variances 1, other leaves N(0, 0.1^2)). XLA:CPU takes a minute to compile even a
    width-4 U-Net's init; apply compiles in seconds. (tests/conftest.py's fixture.)"""
    import jax  # pylint: disable=import-outside-toplevel

    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(seed), x)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        if name == "var":
            return np.ones(leaf.shape, leaf.dtype)
        scale = (1.0 / np.sqrt(np.prod(leaf.shape[:-1]))) if name == "kernel" else 0.1
        return (scale * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def run_config(family: Family):
    """A run config for `family`: its model, image channels, crop (sizes[0]) and batch 1."""
    from segjax.config import base_config  # pylint: disable=import-outside-toplevel
    config = base_config()
    for key, value in family.model.items():
        config.model[key] = value
    config.data.image_channels = family.channels
    config.data.crop = family.sizes[0]
    config.data.mean, config.data.std = (0.5,) * family.channels, (0.5,) * family.channels
    config.eval.batch_size = 1
    return config


def source(name: str, seed: int = 0):
    """`segjax.export.Source` of CANON[name] with random variables."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from segjax import export  # pylint: disable=import-outside-toplevel
    from segjax.models import registry  # pylint: disable=import-outside-toplevel
    family = CANON[name]
    model = registry.build(family.model)
    variables = random_variables(model, jnp.zeros((1, *family.sizes[0], family.channels)), seed)
    return export.Source(model, variables, run_config(family))


def nearest_size(family: Family, size: int) -> tuple[int, int]:
    """The family's allowed size nearest `size` x `size` from below: sizes[0] plus whole
    steps of sizes[1] - sizes[0] on each axis."""
    first, second = family.sizes
    return tuple(start + max(0, (size - start) // (nxt - start)) * (nxt - start)
                 for start, nxt in zip(first, second))


# ----------------------------------------------------------------------------- measurements


class Row(NamedTuple):
    family: str
    fmt: str
    size: tuple[int, int]
    blocked: str          # the ExportError's message; "" when exported
    max_abs_diff: float
    logit_scale: float
    file_bytes: int
    latency_s: float      # median of the runtime, batch 1
    jax_latency_s: float  # median of JAX (jit, segjax's default runtime), same input


def median_seconds(function: Callable, x: np.ndarray, repeats: int) -> float:
    """Median wall time of `function(x)` over `repeats` calls after one warm-up call."""
    np.asarray(function(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(function(x))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name: str, fmt: str, size: int, directory: Path, repeats: int,
            jax_latency: dict) -> Row:
    """Exports CANON[name] as `fmt` at its size nearest `size` (batch 1, verified against
    JAX by segjax.export) and times the exported model and JAX on one input."""
    import jax  # pylint: disable=import-outside-toplevel

    from segjax import deployed, export  # pylint: disable=import-outside-toplevel
    family = CANON[name]
    spatial = nearest_size(family, size)
    src = source(name)
    output = directory / f"{name}.{fmt}"
    try:
        metadata = export.export(src, fmt, output, (*spatial, family.channels), batch=1)
    except export.ExportError as error:
        return Row(name, fmt, spatial, str(error), float("nan"), float("nan"), 0, float("nan"),
                   float("nan"))
    x = np.random.default_rng(1).normal(size=(1, *spatial, family.channels)).astype(np.float32)
    if name not in jax_latency:
        reference = jax.jit(export.logits_function(src.model, src.variables))
        jax_latency[name] = median_seconds(reference, x, repeats)
    runtime_fn = deployed.load(output, threads=os.cpu_count()).predict_fn
    checked = metadata["verification"]
    return Row(name, fmt, spatial, "", checked["max_abs_diff"], checked["logit_scale"],
               output.stat().st_size, median_seconds(runtime_fn, x, repeats), jax_latency[name])


# ----------------------------------------------------------------------------- table


RUNTIME_NAMES = {"onnx": "onnxruntime", "tflite": "LiteRT"}


def table_line(row: Row) -> str:
    size = f"{row.size[0]}x{row.size[1]}"
    if row.blocked:
        return f"| {row.family} | {row.fmt} | {size} | blocked: {row.blocked} | | | | |"
    ratio = row.latency_s / row.jax_latency_s
    return (f"| {row.family} | {row.fmt} | {size} | exported | {row.max_abs_diff:.1e} "
            f"({row.max_abs_diff / row.logit_scale:.1e} of {row.logit_scale:.3g}) | "
            f"{row.file_bytes / 1024:,.0f} KiB | {row.latency_s * 1e3:,.1f} ms | "
            f"{row.jax_latency_s * 1e3:,.1f} ms ({ratio:.2f}x) |")


TABLE_HEADER = ("| family | format | input | status | max abs diff from JAX (of logit scale) "
                "| file | runtime latency | JAX latency (runtime / JAX) |\n"
                "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")


def versions() -> str:
    from importlib import metadata  # pylint: disable=import-outside-toplevel
    packages = ("jax", "tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
    found = []
    for package in packages:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512,
                        help="input size (each family's nearest allowed size at or below it)")
    parser.add_argument("--families", default=",".join(CANON),
                        help="comma-separated CANON names (default: all)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per runtime")
    parser.add_argument("--budget_s", type=float, default=0,
                        help="stop starting families after this many seconds (0: no limit); "
                             "the ones left are listed")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.families.split(",")) - set(CANON))
    formats = sorted(set(args.formats.split(",")) - set(FORMATS))
    if unknown or formats:
        parser.error(f"unknown --families {unknown} (CANON: {', '.join(CANON)}) or --formats "
                     f"{formats} (one of {FORMATS})")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from segjax import runtime  # pylint: disable=import-outside-toplevel
    runtime.configure()
    command = "python experiments/export_canon.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    print(TABLE_HEADER, flush=True)
    start, left = time.monotonic(), []
    jax_latency: dict = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.families.split(","):
            if args.budget_s and time.monotonic() - start > args.budget_s:
                left.append(name)
                continue
            for fmt in args.formats.split(","):
                print(table_line(measure(name, fmt, args.size, Path(directory), args.repeats,
                                         jax_latency)), flush=True)
    print(f"\nGenerated by `{command.strip()}` in {time.monotonic() - start:.0f} s on "
          f"{os.cpu_count()} CPU cores ({versions()}); batch 1, median of {args.repeats} calls "
          "after a warm-up, in one process.")
    if left:
        print(f"Not measured (past --budget_s {args.budget_s:g}): {', '.join(left)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
