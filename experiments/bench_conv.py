"""Benchmark: segjax's convolution formulations against XLA's, and train steps against PyTorch.

    python experiments/bench_conv.py                 # full: ~15-25 min on a quiet 2-core CPU
    python experiments/bench_conv.py --quick         # the key rows only, a few minutes
    python experiments/bench_conv.py --out bench.json --skip-models

Part 1, convolutions: GFLOP/s of the forward, input gradient and weight
gradient of a 3x3 convolution (batch 1) with `impl="native"` (XLA's
convolution and JAX's autodiff) and `impl="cpu"` (segjax.ops.conv_cpu), each
measured alternately (native, cpu, native, cpu, ...) in this process; medians.

Part 2, models: the paper's U-Net (valid convs, 572x572, batch 1, Adam) and
U-Net-ResNet34 (256x256, batch 8, Adam; PyTorch peer:
segmentation_models_pytorch.Unet("resnet34")), train step and forward, segjax
(native and cpu formulations) against PyTorch (2 threads). Every measurement
runs in its own subprocess so that its peak resident memory (ru_maxrss) is its
own; runs alternate between frameworks round by round; step times are medians.

Prints Markdown tables and the command line that produced them; `--out`
writes everything as JSON. Numbers from a loaded machine are noisy: compare
ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent

CONV_CASES = [  # (spatial size, channels, padding)
    (284, 128, "VALID"), (284, 128, "SAME"),
    (572, 64, "VALID"), (572, 64, "SAME"),
    (68, 512, "VALID"), (68, 512, "SAME"),
]
QUICK_CONV_CASES = [(284, 128, "VALID"), (572, 64, "VALID"), (68, 512, "VALID")]
PATHS = ("forward", "input_grad", "weight_grad")


# ----------------------------------------------------------------------------- part 1

def conv_functions(impl: str, padding: str):
    """jitted forward / input-gradient / weight-gradient functions of one formulation."""
    import jax

    from segjax.ops import conv as conv_ops

    def forward(x, w):
        return conv_ops.conv(x, w, padding=padding, impl=impl)

    def input_grad(x, w, dy):
        return jax.vjp(lambda a: forward(a, w), x)[1](dy)[0]

    def weight_grad(x, w, dy):
        return jax.vjp(lambda b: forward(x, b), w)[1](dy)[0]

    return {"forward": jax.jit(forward), "input_grad": jax.jit(input_grad),
            "weight_grad": jax.jit(weight_grad)}


def _time_once(fn, *args) -> float:
    import jax
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def bench_conv_case(size: int, channels: int, padding: str, dtype: str, repeats: int):
    import jax

    from segjax import runtime

    key = runtime.key(0)
    x = jax.random.normal(key, (1, size, size, channels)).astype(dtype)
    w = (jax.random.normal(key, (3, 3, channels, channels)) * 0.05).astype(dtype)
    out = size - 2 if padding == "VALID" else size
    dy = jax.random.normal(key, (1, out, out, channels)).astype(dtype)
    flops = 2.0 * out * out * 9 * channels * channels
    impls = ("native", "cpu")
    fns = {impl: conv_functions(impl, padding) for impl in impls}
    args = {"forward": (x, w), "input_grad": (x, w, dy), "weight_grad": (x, w, dy)}
    times = {(impl, path): [] for impl in impls for path in PATHS}
    for impl in impls:  # compile and warm up
        for path in PATHS:
            _time_once(fns[impl][path], *args[path])
    for _ in range(repeats):
        for path in PATHS:
            for impl in impls:
                times[impl, path].append(_time_once(fns[impl][path], *args[path]))
    row = {"size": size, "channels": channels, "padding": padding, "dtype": dtype}
    for (impl, path), values in times.items():
        row[f"{path}_{impl}_gflops"] = flops / float(np.median(values)) / 1e9
    return row


def conv_table(rows) -> str:
    lines = ["| input, channels | padding | dtype | forward native / cpu | "
             "input grad native / cpu | weight grad native / cpu |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cells = []
        for path in PATHS:
            a, b = r[f"{path}_native_gflops"], r[f"{path}_cpu_gflops"]
            cells.append(f"{a:.1f} / {b:.1f} ({b / a:.2f}x)")
        lines.append(f"| {r['size']}x{r['size']}, {r['channels']}->{r['channels']} | "
                     f"{r['padding']} | {r['dtype']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- part 2 models

def torch_paper_unet(num_classes: int = 2, width: int = 64, depth: int = 4):
    """The paper's U-Net in plain PyTorch: the layout of segjax's 'unet' (valid convs)."""
    import torch
    from torch import nn

    def double_conv(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [width * 2 ** level for level in range(depth + 1)]
            self.down = nn.ModuleList([double_conv(1 if i == 0 else widths[i - 1], widths[i])
                                       for i in range(depth)])
            self.bottom = double_conv(widths[depth - 1], widths[depth])
            self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2)
                                     for i in range(depth)])
            self.up_conv = nn.ModuleList([double_conv(2 * widths[i], widths[i])
                                          for i in range(depth)])
            self.classifier = nn.Conv2d(width, num_classes, 1)

        def forward(self, x):
            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
                x = torch.max_pool2d(x, 2)
            x = self.bottom(x)
            for level in reversed(range(depth)):
                x = self.up[level](x)
                skip = skips[level]
                dh, dw = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
                skip = skip[:, :, dh // 2: dh // 2 + x.shape[2], dw // 2: dw // 2 + x.shape[3]]
                x = self.up_conv[level](torch.cat([skip, x], dim=1))
            return self.classifier(x)

    return UNet()


MODELS = {
    # name: (input shape NHWC, number of classes)
    "unet": ((1, 572, 572, 1), 2),
    "unet_resnet34": ((8, 256, 256, 3), 11),
}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def prepare_torch(model_name: str, mode: str):
    """PyTorch's model, optimizer and data: (one step as a function, parameter count, RSS MB)."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    shape, classes = MODELS[model_name]
    if model_name == "unet":
        model = torch_paper_unet(classes)
    else:
        sys.path.insert(0, str(REPO_ROOT))
        from tests import torch_refs  # pylint: disable=import-outside-toplevel
        torch_refs.define_torchvision_schemas()
        import segmentation_models_pytorch as smp  # pylint: disable=import-outside-toplevel
        model = smp.Unet("resnet34", encoder_weights=None, classes=classes)
    n, *spatial, c = shape
    return torch_step(model, torch.randn(n, c, *spatial), classes, mode)


def torch_step(model, x, classes: int, mode: str):
    """(one Adam + cross-entropy train step or forward of `model` on `x` (N, C, *spatial) as a
    function, parameter count, RSS MB); 2D and 3D alike."""
    import torch
    import torch.nn.functional as F

    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        out_shape = model.eval()(x).shape
    labels = torch.randint(0, classes, (out_shape[0], *out_shape[2:]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()

    def forward():
        model.eval()
        with torch.no_grad():
            model(x)

    return (train_step if mode == "train" else forward), params, _rss_mb()


def prepare_jax(model_name: str, mode: str, impl: str, dtype: str):
    """segjax's model, optimizer and data: (one step as a function, parameter count, RSS MB)."""
    from segjax import runtime
    from segjax.models import registry

    runtime.configure(conv_impl=impl)
    shape, classes = MODELS[model_name]
    config = {"name": model_name, "num_classes": classes,
              "dtype": None if dtype == "float32" else dtype}
    return jax_step(registry.build(config), shape, classes, mode)


def jax_step(model, shape, classes: int, mode: str):
    """(one Adam + cross-entropy train step or forward of `model` on an input of `shape`
    (N, *spatial, C) as a function, parameter count, RSS MB), jitted as segjax's own."""
    import jax
    import jax.numpy as jnp
    import optax

    from segjax import host_memory, runtime
    from segjax.models.segmenter import count_params
    from segjax.train import state as state_lib

    x = jax.random.normal(runtime.key(0), shape)
    # As segjax's train loop initialises: one compiled program (eager
    # initialisation at 572x572 left ~1 GB of freed-but-resident heap).
    variables = state_lib.init_variables(model, runtime.key(1), (1,) + shape[1:])
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    out_shape = jax.eval_shape(lambda v: model.apply(v, x), variables)["logits"].shape
    labels = jax.random.randint(runtime.key(2), out_shape[:-1], 0, classes)
    optimizer = optax.adam(1e-4)
    opt_state = optimizer.init(params)

    def loss_fn(params, extra, x, labels):
        outputs, updates = model.apply({"params": params, **extra}, x, train=True,
                                       mutable=list(extra))
        logits = outputs["logits"].astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates

    def train_step(params, opt_state, extra, x, labels):
        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, extra, x,
                                                                           labels)
        changes, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state, {**extra, **updates}, loss

    # As segjax's own jits compile (segjax.host_memory.compiler_options).
    options = host_memory.compiler_options()
    train_step = jax.jit(train_step, donate_argnums=(0, 1, 2), compiler_options=options)
    forward = jax.jit(lambda variables, x: model.apply(variables, x)["logits"],
                      compiler_options=options)
    state = {"params": params, "opt_state": opt_state, "extra": extra}

    def step():
        if mode == "train":
            state["params"], state["opt_state"], state["extra"], loss = train_step(
                state["params"], state["opt_state"], state["extra"], x, labels)
            jax.block_until_ready(loss)
        else:
            jax.block_until_ready(forward({"params": state["params"], **state["extra"]}, x))

    return step, count_params(variables), _rss_mb()


def prepare(spec: dict):
    """(step function, parameter count, RSS MB) of one model row's spec."""
    if spec["framework"] == "torch":
        return prepare_torch(spec["model"], spec["mode"])
    return prepare_jax(spec["model"], spec["mode"], spec["impl"], spec["dtype"])


def worker(spec: dict, prepare_fn=prepare) -> None:
    """One implementation in this (fresh) process, driven over stdin/stdout.

    `prepare_fn(spec)` builds it; the worker warms it up (`spec["warmup"]`
    steps, default 1, the compilation included), prints READY, then
    times one step per "step" line it reads (printing TIME seconds) until
    "done", when it prints its RESULT.
    """
    step, params, baseline = prepare_fn(spec)
    for _ in range(int(spec.get("warmup", 1))):  # compile + warm-up
        step()
    print("READY", flush=True)
    times = []
    for command in sys.stdin:
        if command.strip() != "step":
            break
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        print(f"TIME {times[-1]}", flush=True)
    result = {"times": times, "params": params, "baseline_mb": baseline,
              "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT " + json.dumps(result), flush=True)


class Worker:
    """A `worker` subprocess seen from the benchmark: start, wait ready, step, finish."""

    def __init__(self, spec: dict, script: str | None = None):
        env = dict(os.environ,
                   PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, script or __file__, "--worker",
                                      json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=env)
        self.error = None

    def _expect(self, prefix: str) -> str | None:
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        self.stderr.seek(0)
        self.error = self.stderr.read()[-2000:] or f"worker exited before {prefix.strip()}"
        return None

    def ready(self) -> bool:
        return self._expect("READY") is not None

    def step(self) -> None:
        """One timed step; returns once the worker reports it (its times come with RESULT)."""
        if self.error:
            return
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        self._expect("TIME ")

    def finish(self) -> dict:
        if not self.error:
            self.proc.stdin.write("done\n")
            self.proc.stdin.flush()
            line = self._expect("RESULT ")
        self.proc.wait()
        self.stderr.close()
        return {"error": self.error} if self.error else json.loads(line)


def label(spec: dict) -> str:
    if spec["framework"] == "torch":
        return "PyTorch 2 threads"
    return f"segjax {spec['impl']} {spec['dtype']}"


def model_specs(quick: bool) -> list[dict]:
    specs = []
    for model in MODELS:
        for mode in ("train", "forward"):
            if quick and model == "unet_resnet34" and mode == "forward":
                continue
            # segjax cpu steps right after PyTorch, so their pairs are seconds apart.
            variants = [("torch", "", "float32"), ("jax", "cpu", "float32"),
                        ("jax", "native", "float32")]
            if not quick:
                variants.append(("jax", "cpu", "bfloat16"))
            for framework, impl, dtype in variants:
                specs.append({"model": model, "mode": mode, "framework": framework,
                              "impl": impl, "dtype": dtype})
    return specs


def spec_name(spec: dict) -> str:
    return f"{spec['model']}/{spec['mode']}/{label(spec)}"


def run_group(specs: list[dict], steps: int, pause: float = 0.5,
              script: str | None = None) -> list[dict]:
    """Prepare the workers of one model and mode together, then step them in turn.

    Between steps the next worker waits `pause` seconds, so that the previous
    one's spinning threads have gone to sleep before it starts. `script` is
    the benchmark whose `--worker` runs them (default: this one).
    """
    workers = [Worker(spec, script) for spec in specs]
    ready = [w.ready() for w in workers]
    for _ in range(steps):
        for w, ok in zip(workers, ready):
            if ok:
                time.sleep(pause)
                w.step()
    return [w.finish() for w in workers]


def paired_ratios(times: list[float], reference: list[float]) -> list[float]:
    """Each step's time over the reference's step taken just before it."""
    return [t / r for t, r in zip(times, reference)]


def bench_models(quick: bool, rounds: int, steps: int, log, only=None) -> list[dict]:
    specs = [s for s in model_specs(quick)
             if not only or any(part in spec_name(s) for part in only)]
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault((spec["model"], spec["mode"]), []).append(i)
    results = {i: [] for i in range(len(specs))}
    ratios = {i: [] for i in range(len(specs))}
    for round_index in range(rounds):
        for (model, mode), members in groups.items():
            group = run_group([specs[i] for i in members], steps)
            reference = next((r for i, r in zip(members, group)
                              if specs[i]["framework"] == "torch" and "times" in r), None)
            for i, result in zip(members, group):
                results[i].append(result)
                if "times" not in result:
                    log(f"round {round_index} {model} {mode} {label(specs[i])}: ERROR "
                        + result["error"][-300:])
                    continue
                if reference is not None:
                    ratios[i] += paired_ratios(result["times"], reference["times"])
                log(f"round {round_index} {model} {mode} {label(specs[i])}: "
                    f"steps {', '.join(f'{t:.3f}' for t in result['times'])} s, "
                    f"peak {result['peak_mb']:.0f} MB")
    rows = []
    for i, spec in enumerate(specs):
        ok = [r for r in results[i] if "times" in r]
        row = dict(spec)
        if ok:
            row.update(seconds=float(np.median([t for r in ok for t in r["times"]])),
                       peak_mb=float(max(r["peak_mb"] for r in ok)),
                       baseline_mb=float(np.median([r["baseline_mb"] for r in ok])),
                       params=ok[0]["params"], paired_ratios=ratios[i])
        else:
            row["error"] = results[i][0]["error"] if results[i] else "not run"
        rows.append(row)
    return rows


def models_table(rows) -> str:
    lines = ["| model | step | implementation | s/step | vs PyTorch (time ratio) | "
             "paired step ratios: median (range) | peak RSS MB | vs PyTorch | params |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    reference = {(r["model"], r["mode"]): r for r in rows
                 if r["framework"] == "torch" and "seconds" in r}
    for r in rows:
        if "seconds" not in r:
            lines.append(f"| {r['model']} | {r['mode']} | {label(r)} | error | | | | | |")
            continue
        ref = reference.get((r["model"], r["mode"]))
        time_ratio = f"{r['seconds'] / ref['seconds']:.2f}x" if ref else "n/a"
        mem_ratio = f"{r['peak_mb'] / ref['peak_mb']:.2f}x" if ref else "n/a"
        paired = r.get("paired_ratios") or []
        paired_text = (f"{np.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f}, "
                       f"{len(paired)} pairs)" if paired and r["framework"] != "torch" else "")
        lines.append(f"| {r['model']} | {r['mode']} | {label(r)} | {r['seconds']:.3f} | "
                     f"{time_ratio} | {paired_text} | {r['peak_mb']:.0f} | {mem_ratio} | "
                     f"{r['params']:,} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="key rows only, fewer repeats")
    parser.add_argument("--out", help="write all results as JSON to this file")
    parser.add_argument("--skip-convs", action="store_true", help="skip part 1")
    parser.add_argument("--skip-models", action="store_true", help="skip part 2")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per conv path")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of fresh subprocesses per model and mode")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per subprocess, interleaved across implementations")
    parser.add_argument("--only", help="comma-separated substrings of 'model/mode/label' "
                        "selecting model rows, e.g. 'unet/train/PyTorch,unet/train/segjax cpu'")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    command = "python experiments/bench_conv.py " + " ".join(argv if argv is not None
                                                              else sys.argv[1:])
    log = lambda message: print(message, file=sys.stderr, flush=True)
    report = {"command": command.strip(), "cpu_count": os.cpu_count(),
              "load_average_start": os.getloadavg()}
    tables = []
    if not args.skip_convs:
        repeats = args.repeats or (3 if args.quick else 5)
        cases = [c + ("float32",) for c in (QUICK_CONV_CASES if args.quick else CONV_CASES)]
        if not args.quick:
            cases.append((284, 128, "VALID", "bfloat16"))
        rows = []
        for size, channels, padding, dtype in cases:
            rows.append(bench_conv_case(size, channels, padding, dtype, repeats))
            log(conv_table(rows[-1:]).splitlines()[-1])
        report["convolutions"] = rows
        tables.append("GFLOP/s of a 3x3 convolution, batch 1, native = XLA's convolution, "
                      "cpu = segjax.ops.conv_cpu (ratio cpu/native)\n\n" + conv_table(rows))
    if not args.skip_models:
        rounds = args.rounds or (1 if args.quick else 2)
        steps = args.steps or 5
        only = [part for part in (args.only or "").split(",") if part]
        rows = bench_models(args.quick, rounds, steps, log, only)
        report["models"] = rows
        tables.append("Train step (Adam) and forward, median seconds; peak RSS of the "
                      "measuring process\n\n" + models_table(rows))
    report["load_average_end"] = os.getloadavg()
    print(f"Command: `{report['command']}` (load average at start "
          f"{report['load_average_start'][0]:.1f}, end {report['load_average_end'][0]:.1f}, "
          f"{report['cpu_count']} CPUs)\n")
    print("\n\n".join(tables))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
