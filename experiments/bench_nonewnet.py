"""Benchmark: No New-Net's train step on this CPU, segjax against the same network in PyTorch.

    python experiments/bench_nonewnet.py                          # 64^3 patch, batch 1
    python experiments/bench_nonewnet.py --patch 32,64,64 --rounds 1 --steps 3   # quick

One train step = forward, cross-entropy, backward and an Adam update of
`nonewnet` at the paper's widths (30-480, 4 input modalities, 4 classes,
14,490,784 parameters) on one patch of `--patch` voxels, batch `--batch`.
segjax runs its own jit (as the train loop compiles it) with the "cpu" and
"native" convolution formulations; the peer is the same network written in
PyTorch here (`torch_nonewnet`, 2 threads): Conv3d without bias,
InstanceNorm3d(affine), LeakyReLU(0.01), 2x max pooling, trilinear 2x
upsampling after the feature maps were reduced, concatenation [skip,
upsampled], a 1x1x1 classifier. MONAI's DynUNet is not used as the peer: its
decoder upsamples with transposed convolutions from the full width of the level
below (nnU-Net's later layout), so it is a different network with different
parameters, not No New-Net's Fig. 1. Both sides have the same parameter count
(checked, and printed in the table).

Every implementation runs in its own subprocess (the machinery of
`bench_conv.py`), so its peak resident memory (ru_maxrss, compilation
included) is its own; the processes take their steps in turn, so each segjax
step is paired with a PyTorch step taken seconds before it. Prints a
Markdown table (median seconds per step, time and peak-memory ratios against
PyTorch) and the command that produced it.
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

IN_CHANNELS, NUM_CLASSES = 4, 4
IMPLEMENTATIONS = (("torch", ""), ("jax", "cpu"), ("jax", "native"))


def torch_nonewnet(in_channels: int = IN_CHANNELS, num_classes: int = NUM_CLASSES,
                   width: int = 30, depth: int = 4):
    """No New-Net in PyTorch, layer for layer as segjax's `nonewnet` (see the docstring)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    widths = [width * 2 ** level for level in range(depth + 1)]

    def conv(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1, bias=False),
                             nn.InstanceNorm3d(c_out, eps=1e-5, affine=True),
                             nn.LeakyReLU(0.01, inplace=True))

    class NoNewNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList()
            channels = in_channels
            for level in range(depth):
                self.down.append(nn.Sequential(conv(channels, widths[level]),
                                               conv(widths[level], widths[level])))
                channels = widths[level]
            self.bottom = nn.Sequential(conv(channels, widths[depth]),
                                        conv(widths[depth], widths[depth - 1]))
            self.up = nn.ModuleList(
                nn.Sequential(conv(2 * widths[level], widths[level]),
                              conv(widths[level], widths[max(level - 1, 0)]))
                for level in reversed(range(depth)))
            self.classifier = nn.Conv3d(width, num_classes, 1)

        def forward(self, x):
            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
                x = F.max_pool3d(x, 2)
            x = self.bottom(x)
            for block, skip in zip(self.up, reversed(skips)):
                x = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
                x = block(torch.cat([skip, x], dim=1))
            return self.classifier(x)

    return NoNewNet()


def prepare(spec: dict):
    """(one train step as a function, parameter count, RSS MB) for one implementation."""
    shape = (spec["batch"], *spec["patch"], IN_CHANNELS)
    if spec["framework"] == "torch":
        import torch
        torch.set_num_threads(2)
        torch.manual_seed(0)
        x = torch.randn(spec["batch"], IN_CHANNELS, *spec["patch"])
        return bench_conv.torch_step(torch_nonewnet(), x, NUM_CLASSES, "train")
    from segjax import runtime
    from segjax.models import registry
    runtime.configure(conv_impl=spec["impl"])
    model = registry.build({"name": "nonewnet", "num_classes": NUM_CLASSES})
    return bench_conv.jax_step(model, shape, NUM_CLASSES, "train")


def label(spec: dict) -> str:
    return "PyTorch 2 threads" if spec["framework"] == "torch" else f"segjax {spec['impl']}"


def bench(patch, batch: int, rounds: int, steps: int, log) -> list[dict]:
    specs = [{"framework": framework, "impl": impl, "patch": list(patch), "batch": batch}
             for framework, impl in IMPLEMENTATIONS]
    times = {i: [] for i in range(len(specs))}
    peaks = {i: [] for i in range(len(specs))}
    ratios = {i: [] for i in range(len(specs))}
    rows = [dict(spec) for spec in specs]
    for round_index in range(rounds):
        results = bench_conv.run_group(specs, steps, script=__file__)
        reference = results[0] if "times" in results[0] else None
        for i, result in enumerate(results):
            if "times" not in result:
                rows[i]["error"] = result["error"]
                log(f"round {round_index} {label(specs[i])}: ERROR {result['error'][-300:]}")
                continue
            times[i] += result["times"]
            peaks[i].append(result["peak_mb"])
            rows[i]["params"] = result["params"]
            if reference is not None:
                ratios[i] += bench_conv.paired_ratios(result["times"], reference["times"])
            log(f"round {round_index} {label(specs[i])}: steps "
                f"{', '.join(f'{t:.2f}' for t in result['times'])} s, peak "
                f"{result['peak_mb']:.0f} MB")
    for i, row in enumerate(rows):
        if times[i]:
            row.update(seconds=float(np.median(times[i])), peak_mb=float(max(peaks[i])),
                       paired_ratios=ratios[i])
    return rows


def table(rows: list[dict]) -> str:
    reference = rows[0] if "seconds" in rows[0] else None
    lines = ["| implementation | s/step (median) | time vs PyTorch | paired ratios: median "
             "(range) | peak RSS MB | memory vs PyTorch | params |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for row in rows:
        if "seconds" not in row:
            lines.append(f"| {label(row)} | error | | | | | |")
            continue
        paired = row["paired_ratios"]
        paired_text = (f"{np.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f}, "
                       f"{len(paired)} pairs)" if paired and row["framework"] != "torch" else "")
        time_ratio = f"{row['seconds'] / reference['seconds']:.2f}x" if reference else "n/a"
        memory_ratio = f"{row['peak_mb'] / reference['peak_mb']:.2f}x" if reference else "n/a"
        lines.append(f"| {label(row)} | {row['seconds']:.2f} | {time_ratio} | {paired_text} | "
                     f"{row['peak_mb']:.0f} | {memory_ratio} | {row['params']:,} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", default="64,64,64", help="patch D,H,W (multiples of 16)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of fresh subprocesses")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per subprocess")
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        bench_conv.worker(json.loads(args.worker), prepare)
        return 0
    patch = tuple(int(v) for v in args.patch.split(","))
    if len(patch) != 3 or any(v % 16 for v in patch):
        raise SystemExit(f"--patch {args.patch}: expected 3 sizes, each a multiple of 16")
    command = "python experiments/bench_nonewnet.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    load_start = os.getloadavg()[0]
    rows = bench(patch, args.batch, args.rounds, args.steps, log)
    params = {row.get("params") for row in rows if "params" in row}
    if len(params) > 1:
        log(f"WARNING: parameter counts differ between implementations: {sorted(params)}")
    print(f"Command: `{command.strip()}` (No New-Net train step, Adam + cross-entropy, patch "
          f"{'x'.join(map(str, patch))}, batch {args.batch}, {IN_CHANNELS} modalities, "
          f"{NUM_CLASSES} classes; load average at start {load_start:.1f}, end "
          f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)\n")
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"command": command.strip(), "rows": rows},
                                             indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
