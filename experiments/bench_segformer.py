"""SegFormer-B0 training throughput: segjax's train step against transformers', same run.

    .venv/bin/python experiments/bench_segformer.py                   # 20 timed steps each
    .venv/bin/python experiments/bench_segformer.py --steps 5 --warmup 2

Both train SegFormer-B0 (150 classes, as the ADE20K model) at 256x256, batch 8,
with AdamW and pixel-wise cross-entropy on logits upsampled to the labels:

- segjax: `segformer_b0` (style "hf": transformers' layer norms), the train
  state of `segjax.train.state.create_train_state` and the compiled step of
  `segjax.train.step.compile_train_step`, exactly what `segjax.main` runs
  (configs/segformer_b0_camvid.py's optimiser and loss);
- transformers: `SegformerForSemanticSegmentation(SegformerConfig(...B0...))`,
  `torch.optim.AdamW`, its own loss (`labels=`: bilinear upsampling + cross
  entropy), `torch.set_num_threads(os.cpu_count())`.

Each framework runs in its own subprocess (so that its peak resident memory,
ru_maxrss, is its own; bench_conv's worker protocol), is compiled/warmed up
with `--warmup` steps, and then the two take their timed steps in turn, one
each, so that a load change on the shared machine hits both alike. Reported: images/s from the median step time,
the median of the paired time ratios, peak RSS, and both as segjax/transformers
ratios, as a Markdown table with the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from experiments import bench_conv  # noqa: E402  pylint: disable=wrong-import-position
BATCH, SIZE, CLASSES = 8, 256, 150


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((BATCH, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, CLASSES, (BATCH, SIZE, SIZE)).astype(np.int32)
    return images, labels


def prepare_segjax():
    """One segjax train step as a function (state kept inside), the parameter count."""
    import jax

    from configs import segformer_b0_camvid
    from segjax import runtime
    from segjax.models import registry
    from segjax.models.segmenter import count_params
    from segjax import sharding
    from segjax.train import state as state_lib, step as step_lib

    config = segformer_b0_camvid.get_config()
    with config.unlocked():
        config.model.num_classes = CLASSES
        config.model.style = "hf"
        config.data.batch_size = BATCH
    runtime.configure(config)
    model = registry.build(config.model)
    mesh = sharding.make_mesh(config.mesh)
    state, _ = state_lib.create_train_state(config, model, (1, SIZE, SIZE, 3), mesh)
    images, labels = _data()
    batch = sharding.global_batch({"image": images, "label": labels}, mesh)
    ignore = int(config.data.ignore_index)
    train_fn = step_lib.compile_train_step(mesh, model=model, loss_config=config.loss,
                                           num_classes=CLASSES, ignore_index=ignore)
    rng = runtime.key(1)
    held = {"state": state, "accumulator": None}
    params = count_params({"params": state.params})

    def step():
        held["state"], metrics = train_fn(held["state"], batch, rng)
        held["accumulator"] = step_lib.accumulate(held["accumulator"], metrics,
                                                  held["state"].step)
        jax.block_until_ready(held["accumulator"])

    return step, params


def prepare_transformers():
    """One transformers train step as a function, the parameter count."""
    import torch

    from tests import torch_refs  # pylint: disable=import-outside-toplevel
    from tests.models import transformer_refs  # pylint: disable=import-outside-toplevel
    torch_refs.define_torchvision_schemas()
    import transformers  # pylint: disable=import-outside-toplevel

    from configs import segformer_b0_camvid
    optim = segformer_b0_camvid.get_config().optim
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(
        num_labels=CLASSES, **transformer_refs.SEGFORMER_CONFIGS["b0"]))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.learning_rate,
                                  weight_decay=optim.weight_decay)
    images, labels = _data()
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(labels.astype(np.int64))
    params = sum(p.numel() for p in model.parameters())

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(pixel_values=x, labels=y).loss.backward()
        optimizer.step()

    return step, params


def prepare(spec: dict):
    """(step function, parameter count, RSS MB) of one framework, for bench_conv's worker."""
    step, params = (prepare_segjax if spec["framework"] == "segjax" else prepare_transformers)()
    return step, params, bench_conv._rss_mb()  # pylint: disable=protected-access


def run(steps: int, warmup: int) -> dict[str, dict]:
    """Both frameworks' timed steps, taken in turn (bench_conv's paired protocol)."""
    frameworks = ("transformers", "segjax")
    specs = [{"framework": name, "warmup": warmup} for name in frameworks]
    results = dict(zip(frameworks, bench_conv.run_group(specs, steps, script=__file__)))
    failed = {name: r["error"] for name, r in results.items() if "error" in r}
    if failed:
        raise RuntimeError(f"benchmark worker(s) failed: {failed}")
    return results


def table(results: dict[str, dict]) -> str:
    ours, theirs = results["segjax"], results["transformers"]
    rate = lambda r: BATCH / float(np.median(r["times"]))
    paired = np.median(np.asarray(theirs["times"]) / np.asarray(ours["times"]))
    rows = ["| | segjax | transformers | segjax / transformers |", "| --- | --- | --- | --- |",
            f"| images/s (median step) | {rate(ours):.2f} | {rate(theirs):.2f} | "
            f"{rate(ours) / rate(theirs):.2f}x (paired steps: {paired:.2f}x) |",
            f"| median step, s | {np.median(ours['times']):.3f} | "
            f"{np.median(theirs['times']):.3f} | |",
            f"| peak RSS, MB | {ours['peak_mb']:.0f} | {theirs['peak_mb']:.0f} | "
            f"{ours['peak_mb'] / theirs['peak_mb']:.2f}x |",
            f"| parameters | {ours['params']:,} | {theirs['params']:,} | |"]
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compile included)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        bench_conv.worker(json.loads(args.worker), prepare)
        return 0
    results = run(args.steps, args.warmup)
    print(f"command: python experiments/bench_segformer.py {' '.join(argv or sys.argv[1:])}")
    print(f"SegFormer-B0 train step, {SIZE}x{SIZE}, batch {BATCH}, {CLASSES} classes, AdamW, "
          f"cross-entropy; {args.steps} timed steps each, taken in turn\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
