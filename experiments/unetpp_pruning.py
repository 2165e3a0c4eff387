"""Pruned UNet++ L1..L4 from one trained checkpoint: time per image and mIoU (Zhou et al. 2018).

    python experiments/unetpp_pruning.py --workdir runs/unetpp_r34_cpu
    python experiments/unetpp_pruning.py --workdir runs/unetpp_r34_cpu --split val --limit 20 \\
        --output runs/unetpp_r34_cpu/pruning

The run must have been trained with deep supervision (`model.deep_supervision`,
as `configs/unetplusplus_resnet34_camvid.py` and `configs/unetplusplus_camvid.py`
do), so that every branch X^{0,d} has a trained classifier. For each depth d the
model is rebuilt with `prune_depth=d` and no deep supervision (the paper's "fast
mode": only the nodes with i + j <= d and branch d's classifier are built and
run; a ResNet encoder stops after the deepest row used) and given the subset of
the checkpoint's variables it has, so L4 is the full model's main output.

Reported per depth: parameters, forward GFLOPs at the evaluation input (XLA's
cost analysis, native convolutions), the model's forward time per image (the
median of `--repeats` timed calls on one image of the evaluation size, after
a compiled warm-up), the evaluation's seconds per image (pre/post-processing
and the run's test-time options included, as `segjax.evaluate` measures it) and
the mIoU on the split. Writes pruning.json and pruning.md to --output
(default <workdir>/pruning_<split>).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.models_table import measure_model  # noqa: E402
from segjax import checkpoints, cli, evaluate, evaluation, runtime  # noqa: E402
from segjax.config import EvalOptions  # noqa: E402
from segjax.data.sources import load_split  # noqa: E402
from segjax.models import registry  # noqa: E402
from segjax.ops import conv as conv_ops  # noqa: E402


def pruned_variables(variables: dict, shapes: dict) -> dict:
    """The leaves of `variables` at the paths of `shapes` (a pruned model's variables)."""
    def take(path, leaf):
        node = variables
        for key in path:
            name = key.key
            if not isinstance(node, dict) or name not in node:
                joined = "/".join(k.key for k in path)
                raise KeyError(f"the checkpoint has no variable {joined}; was it trained with "
                               "model.deep_supervision=True (a classifier per branch)?")
            node = node[name]
        if tuple(node.shape) != tuple(leaf.shape):
            raise ValueError(f"{'/'.join(k.key for k in path)}: checkpoint shape {node.shape}, "
                             f"pruned model shape {leaf.shape}")
        return node

    return jax.tree_util.tree_map_with_path(take, shapes)


def native_cost(model, shape) -> tuple[int, float]:
    """(parameters, forward GFLOPs) of XLA's cost analysis, counting native convolutions."""
    previous = conv_ops.implementation()
    conv_ops.set_default_implementation("native")
    try:
        return measure_model(model, shape)
    finally:
        conv_ops.set_default_implementation(previous)


def forward_seconds(predict_fn, shape, repeats: int) -> float:
    """Median seconds of one compiled forward pass on a batch of one image."""
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    predict_fn(batch)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_fn(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure_depth(depth: int, config, variables, examples, options, repeats: int) -> dict:
    model_config = dict(config.model.to_dict(), prune_depth=depth, deep_supervision=False)
    model = registry.build(model_config)
    height, width = options.tile or np.asarray(examples[0]["image"]).shape[:2]
    shape = (1, height, width, int(config.data.image_channels))
    shapes = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False),
                            jax.ShapeDtypeStruct(shape, jnp.float32))
    subset = pruned_variables(variables, shapes)
    predict_fn = evaluation.make_predict_fn(model, subset)
    result, _ = evaluation.evaluate(predict_fn, config, examples, options)
    parameters, gflops = native_cost(model, shape)
    return {"depth": depth, "parameters": parameters, "gflops": gflops,
            "forward_seconds": forward_seconds(predict_fn, shape, repeats),
            "eval_seconds_per_image": result["seconds_per_image"], "miou": result["miou"],
            "input_shape": list(shape), "num_images": result["num_images"]}


def markdown(rows: list[dict], run: str, split: str) -> str:
    lines = [f"# Pruned UNet++ from {run} on {split} ({rows[0]['num_images']} images, input "
             f"{rows[0]['input_shape'][1]}x{rows[0]['input_shape'][2]})", "",
             "| depth | parameters | GFLOPs | forward ms/image | eval s/image | mIoU |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| L{row['depth']} | {row['parameters']:,} | {row['gflops']:.1f} | "
                     f"{1000 * row['forward_seconds']:.1f} | "
                     f"{row['eval_seconds_per_image']:.3f} | {100 * row['miou']:.2f} |")
    return "\n".join(lines) + "\n"


def define_flags(values: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(values)
    flags.DEFINE_string("split", "val", "'val'/'train' (the run's splits) or a split "
                        "expression.", flag_values=values)
    flags.DEFINE_list("depths", ["1", "2", "3", "4"], "Pruning depths to measure.",
                      flag_values=values)
    flags.DEFINE_integer("limit", 0, "The first N images only.", flag_values=values)
    flags.DEFINE_integer("repeats", 10, "Timed forward calls per depth.", flag_values=values)
    flags.DEFINE_string("output", None, "Report directory (default <run>/pruning_<split>).",
                        flag_values=values)


def main(argv=None) -> int:
    values, config = cli.parse(argv, define_flags, doc=__doc__,
                               program="python experiments/unetpp_pruning.py",
                               default_config=cli.run_config)
    runtime.configure(config)
    path = cli.checkpoint_path(values)
    if not config.model.get("deep_supervision"):
        raise ValueError(f"{path}: model.deep_supervision is not set; "
                         "pruning needs a classifier trained on every branch")
    variables = checkpoints.load(path, config).variables
    options = EvalOptions.from_config(config)
    examples = load_split(config.data, evaluate.split_expression(config, values.split))
    if values.limit:
        examples = examples[:values.limit]
    rows = []
    for depth in (int(d) for d in values.depths):
        rows.append(measure_depth(depth, config, variables, examples, options, values.repeats))
        print(json.dumps(rows[-1]), flush=True)
    run = Path(values.workdir) if values.workdir else Path(values.checkpoint).parent
    output = Path(values.output) if values.output else run / f"pruning_{values.split}"
    output.mkdir(parents=True, exist_ok=True)
    (output / "pruning.json").write_text(json.dumps(rows, indent=2))
    (output / "pruning.md").write_text(markdown(rows, str(run), values.split))
    print(markdown(rows, str(run), values.split))
    return 0


if __name__ == "__main__":
    cli.run(main)
