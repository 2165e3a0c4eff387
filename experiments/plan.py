"""Fits before it flies: a config's real train step, compiled for its slice on simulated devices.

    python experiments/plan.py --config configs/segformer_ade20k.py:b5 --devices 16 --hbm 16
    python experiments/plan.py --config configs/axial_deeplab_cityscapes.py:xl \\
        --config.train.remat=blocks --json plans/axial_xl_remat.json

lowers and compiles `segjax.train.step.compile_train_step` for the config's
full global batch and crop on `--devices` simulated CPU devices (default: the
devices of `config.reproduction.slice`), with the config's mesh and state
sharding, from abstract shapes: the train state is `jax.eval_shape` of its
creation, so no parameter is ever allocated. Convolutions are traced in XLA's
native form (`conv_impl=native`), as a TPU runs them. It prints:

- per-device bytes: parameters, optimiser state and batch statistics (from
  the state's shapes and shardings), and XLA's memory analysis of the
  compiled per-device program: arguments (state + batch shard), temporaries
  (the activations kept for the backward pass, gradients, scratch) and the
  peak, arguments + outputs - donated aliases + temporaries;
- FLOPs per step: convolutions and matrix products counted analytically from
  the step's jaxpr (2 x multiply-adds; a convolution's input-dilation holes
  are not counted, its zero padding is), beside XLA's own count. XLA's count
  is wrong for grouped convolutions' gradients: the weight gradient of a
  depthwise convolution (batch_group_count > 1) is counted as a dense one,
  31x too many for a 3x3 depthwise layer of 64 channels (checked against the
  analytic count on single layers, docs/reproductions.md), which inflates
  Xception's, MobileNet's and SegFormer's totals;
- whether the peak fits `--hbm` GiB per device, and if not, what to change
  (bfloat16 compute, FSDP, rematerialisation, a smaller per-device batch with
  gradient accumulation), with the estimated effect of each;
- the step time the FLOPs take at `--utilization` (default 0.4) of the
  chips' bf16 peak (`--peak_tflops`; the slice's), counting only the chips
  that split the batch (a 'model' axis of replicas adds memory, not speed).

A batch that the devices do not divide is planned on data = gcd(batch,
devices) and the other devices on 'model' (FSDP storage there), as
configs/common.py lays such configs out. XLA:CPU's buffer assignment
stands in for the TPU's: it does not model the TPU's tiled layouts (minor
dimensions padded to 128, second-minor to 8), which enlarge tensors with few
channels (logits of 19-21 classes, 3-channel images), so a peak within 15% of
the HBM is reported as tight.

`--json PATH` writes the record; `--table RECORD.json ...` prints the
Markdown table of docs/reproductions.md from records.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024 ** 3
TIGHT = 0.85


def _early_devices(argv) -> int | None:
    """--devices N from argv, read before JAX is imported (it fixes the CPU device count)."""
    for index, arg in enumerate(argv):
        if arg.startswith("--devices="):
            return int(arg.split("=", 1)[1])
        if arg == "--devices" and index + 1 < len(argv):
            return int(argv[index + 1])
    return None


def _config_spec(argv) -> str | None:
    """The `path.py[:arg]` of --config in argv (the record names its config by it)."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    return spec


def _config_slice_devices(argv) -> int | None:
    """The device count of the config's slice, for when --devices is not given."""
    spec = _config_spec(argv)
    if spec is None:
        return None
    sys.path.insert(0, str(ROOT))
    from segjax import config as config_lib  # noqa: E402  (no JAX backend is touched)
    slice_name = config_lib.load(spec).reproduction.slice
    from configs import common  # noqa: E402
    return common.SLICES[slice_name].devices if slice_name in common.SLICES else None


def _set_device_count(argv) -> None:
    if "jax" in sys.modules or any(a.startswith(("--table", "--all")) for a in argv):
        return
    devices = _early_devices(argv) or _config_slice_devices(argv) or 1
    flags = os.environ.get("XLA_FLAGS", "")
    # LLVM's optimisation level changes code generation only, not the buffer assignment that
    # the memory analysis reads (checked: equal bytes at levels 0 and 2), and compiles faster.
    if "xla_backend_optimization_level" not in flags:
        flags += " --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"


if __name__ == "__main__":
    _set_device_count(sys.argv)
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import flags  # noqa: E402

from segjax import cli, runtime, sharding  # noqa: E402
from segjax import config as config_lib  # noqa: E402
from segjax.data import panoptic  # noqa: E402
from segjax.models import registry  # noqa: E402
from segjax.models.policy import ApplyPolicy  # noqa: E402

# ----------------------------------------------------------------------------- FLOPs


def _shape(var) -> tuple[int, ...]:
    return tuple(int(d) for d in var.aval.shape)


def conv_flops(eqn) -> float:
    """2 x multiply-adds of one conv_general_dilated (zero padding counted, input-dilation
    holes not)."""
    lhs, rhs = eqn.invars[:2]
    out = eqn.outvars[0]
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec   # (out feature, in feature, *spatial)
    rhs_shape = _shape(rhs)
    taps = math.prod(rhs_shape[d] for d in rhs_spec[2:])
    in_features = rhs_shape[rhs_spec[1]]
    holes = math.prod(eqn.params.get("lhs_dilation") or (1,))
    return 2.0 * math.prod(_shape(out)) * taps * in_features / holes


def dot_flops(eqn) -> float:
    """2 x multiply-adds of one dot_general."""
    lhs, rhs = (_shape(v) for v in eqn.invars[:2])
    (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    free = [size for dim, size in enumerate(rhs) if dim not in rhs_contract and
            dim not in rhs_batch]
    return 2.0 * math.prod(lhs) * math.prod(free)


def _sub_jaxprs(value):
    from jax.extend import core as jex_core  # pylint: disable=import-outside-toplevel
    if isinstance(value, jex_core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex_core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def jaxpr_flops(jaxpr) -> dict[str, float]:
    """{'conv': ..., 'dot': ...} FLOPs of a jaxpr, sub-jaxprs included (scan bodies times
    their length, the costliest branch of a cond)."""
    totals = {"conv": 0.0, "dot": 0.0}
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            totals["conv"] += conv_flops(eqn)
        elif name == "dot_general":
            totals["dot"] += dot_flops(eqn)
        if name == "cond":
            branches = [jaxpr_flops(b.jaxpr) for b in eqn.params["branches"]]
            best = max(branches, key=lambda t: t["conv"] + t["dot"])
            totals = {k: totals[k] + best[k] for k in totals}
            continue
        repeat = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
        for key, value in eqn.params.items():
            for sub in _sub_jaxprs(value):
                inner = jaxpr_flops(sub)
                totals = {k: totals[k] + repeat * inner[k] for k in totals}
    return totals


# ----------------------------------------------------------------------------- the plan


def plan_mesh(config, devices: int) -> tuple[dict, str]:
    """config.mesh for `devices` (the config's when it fits them), and a note."""
    mesh = config.mesh.to_dict()
    batch = int(config.data.batch_size)
    data, model = int(mesh["data"]), int(mesh["model"])
    if data == -1 and devices % model == 0 and batch % (devices // model) == 0:
        mesh.update(data=devices // model)  # what sharding.make_mesh resolves -1 to
        return mesh, ""
    if data * model == devices and batch % data == 0:
        return mesh, ""
    data = math.gcd(batch, devices)
    mesh.update(data=data, model=devices // data)
    note = ""
    if data < devices:
        if mesh.get("param_sharding", "replicated") == "replicated":
            mesh.update(param_sharding="fsdp", fsdp_axes=("model",))
        note = (f"batch {batch} over data={data}; the other {devices // data}x devices on "
                "'model' hold FSDP shards and repeat their group's compute")
    return mesh, note


def batch_shapes(config, batch: int) -> dict:
    """The train batch's arrays (global shapes), as the data pipeline delivers them."""
    crop = tuple(int(s) for s in config.data.crop)
    f32 = jnp.float32
    shapes = {"image": jax.ShapeDtypeStruct((batch, *crop, int(config.data.image_channels)),
                                            f32),
              "label": jax.ShapeDtypeStruct((batch, *crop), jnp.int32)}
    if config.loss.use_weight_map:
        shapes["weight"] = jax.ShapeDtypeStruct((batch, *crop), f32)
    if str(config.data.source).startswith("panoptic"):
        for key in panoptic.TARGET_KEYS:
            trailing = (2,) if key == "offset" else ()
            shapes[key] = jax.ShapeDtypeStruct((batch, *crop, *trailing), f32)
    return shapes


def _part_bytes(state, shardings) -> dict[str, int]:
    return {"params": sharding.bytes_per_device(state.params, shardings.params),
            "optimizer": sharding.bytes_per_device(state.opt_state, shardings.opt_state),
            "batch_stats": sharding.bytes_per_device(state.batch_stats, shardings.batch_stats)}


def plan(config, devices: int) -> dict:
    """Compiles the config's train step on `devices` CPU devices; returns the record."""
    from segjax.train import state as state_lib, step as step_lib  # entry point: may import

    config.unlock()
    config.runtime.conv_impl = "native"
    config.model.init_from = ""          # shapes only: nothing is loaded
    config.lock()
    runtime.configure(config)
    registry.import_modules(config.imports)
    model = registry.build(config.model)
    mesh_config, note = plan_mesh(config, devices)
    mesh = sharding.make_mesh(mesh_config, jax.devices()[:devices])
    batch = int(config.data.batch_size)
    crop = tuple(int(s) for s in config.data.crop)
    channels = int(config.data.image_channels)
    policy = ApplyPolicy.from_config(config)
    state = state_lib.train_state_shapes(config, model, (1, *crop, channels))
    shardings = sharding.tree_shardings(state, mesh, mesh_config)
    shapes = batch_shapes(config, batch)
    rng = jax.eval_shape(lambda: runtime.key(0))
    train_fn = step_lib.compile_train_step(
        mesh, model=model, loss_config=config.loss, num_classes=int(config.model.num_classes),
        ignore_index=int(config.data.ignore_index), policy=policy, state_shardings=shardings,
        mesh_config=mesh_config)
    traced = train_fn.trace(state, shapes, rng)
    flops = jaxpr_flops(traced.jaxpr.jaxpr)
    started = time.perf_counter()
    compiled = traced.lower().compile()
    compile_seconds = time.perf_counter() - started
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes
            - memory.alias_size_in_bytes + memory.temp_size_in_bytes)
    parameters = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(state.params))
    reproduction = config.reproduction
    return {
        "config": "", "model": str(config.model.name), "parameters": int(parameters),
        "dataset": str(reproduction.dataset), "paper": str(reproduction.paper),
        "metric": str(reproduction.metric), "value": float(reproduction.value),
        "table": str(reproduction.table), "slice": str(reproduction.slice),
        "dtype": str(config.model.dtype), "remat": str(config.train.remat),
        "global_batch": batch, "crop": list(crop), "devices": devices,
        "mesh": {"data": int(mesh_config["data"]), "model": int(mesh_config["model"]),
                 "param_sharding": str(mesh_config.get("param_sharding", "replicated"))},
        "mesh_note": note, "bytes": {**_part_bytes(state, shardings),
                                     "arguments": int(memory.argument_size_in_bytes),
                                     "outputs": int(memory.output_size_in_bytes),
                                     "aliased": int(memory.alias_size_in_bytes),
                                     "temporaries": int(memory.temp_size_in_bytes),
                                     "peak": int(peak)},
        "flops": {"conv": flops["conv"], "dot": flops["dot"],
                  "analytic": flops["conv"] + flops["dot"],
                  "xla_per_device": float(cost.get("flops", float("nan")))},
        "compile_seconds": compile_seconds,
    }


def verdict(record: dict, hbm_gib: float) -> str:
    """'fits', 'tight' (within 15% of the HBM) or 'does not fit'."""
    fraction = record["bytes"]["peak"] / (hbm_gib * GIB)
    return "fits" if fraction <= TIGHT else ("tight" if fraction <= 1.0 else "does not fit")


def remedies(record: dict, hbm_gib: float) -> list[str]:
    """What to change when the peak exceeds (or nears) the HBM, with estimated peaks."""
    b = record["bytes"]
    state = b["params"] + b["optimizer"] + b["batch_stats"]
    peak, temp, hbm = b["peak"], b["temporaries"], hbm_gib * GIB
    if peak <= TIGHT * hbm:
        return []
    out = []
    gib = lambda v: f"{v / GIB:.1f} GiB"  # noqa: E731
    if record["dtype"] == "float32":
        out.append(f"compute in bfloat16 (--config.model.dtype=bfloat16): activations about "
                   f"halve, peak ~{gib(peak - temp / 2)}")
    if record["mesh"]["param_sharding"] == "replicated" and record["devices"] > 1:
        shards = record["devices"]
        saved = state * (1 - 1 / shards)
        out.append(f"FSDP (--config.mesh.param_sharding=fsdp): state {gib(state)} -> "
                   f"~{gib(state / shards)} per device, peak ~{gib(peak - saved)}")
    if record["remat"] == "none":
        out.append("rematerialise blocks (--config.train.remat=blocks): temporaries (now "
                   f"{gib(temp)}) drop to the blocks' inputs; re-plan to measure")
    per_device = record["global_batch"] // record["mesh"]["data"]
    if per_device > 1:
        out.append(f"halve the per-device batch ({per_device} -> {per_device // 2}: twice the "
                   "chips, or half --config.data.batch_size with "
                   "--config.optim.accumulate_steps=2, the same batch per update): "
                   f"peak ~{gib(peak - temp / 2)}")
    return out


def step_seconds(record: dict, peak_tflops: float, utilization: float) -> float:
    chips = record["mesh"]["data"]
    return record["flops"]["analytic"] / (chips * peak_tflops * 1e12 * utilization)


def describe(record: dict, hbm_gib: float, peak_tflops: float, utilization: float) -> str:
    b = record["bytes"]
    gib = lambda v: f"{v / GIB:.2f} GiB"  # noqa: E731
    lines = [
        f"{record['config']}: {record['model']} ({record['parameters']:,} parameters), "
        f"{record['dtype']}, global batch {record['global_batch']} of "
        f"{'x'.join(map(str, record['crop']))}",
        f"mesh data={record['mesh']['data']} x model={record['mesh']['model']} over "
        f"{record['devices']} devices, state {record['mesh']['param_sharding']}"
        + (f" ({record['mesh_note']})" if record["mesh_note"] else ""),
        f"per device: parameters {gib(b['params'])}, optimiser {gib(b['optimizer'])}, "
        f"batch statistics {gib(b['batch_stats'])}; XLA: arguments {gib(b['arguments'])}, "
        f"temporaries (activations) {gib(b['temporaries'])}, peak {gib(b['peak'])}",
        f"FLOPs per step: {record['flops']['analytic'] / 1e12:.2f} TFLOPs (convolutions "
        f"{record['flops']['conv'] / 1e12:.2f}, matmuls {record['flops']['dot'] / 1e12:.2f}; "
        f"XLA's count {record['flops']['xla_per_device'] * record['devices'] / 1e12:.2f} "
        "over all devices)",
        f"HBM {hbm_gib:g} GiB per device: {verdict(record, hbm_gib)} "
        f"({100 * b['peak'] / (hbm_gib * GIB):.0f}%)",
        f"step time at {utilization:.0%} of {peak_tflops:g} TFLOPs per chip: "
        f"{1000 * step_seconds(record, peak_tflops, utilization):.1f} ms",
        f"compiled in {record['compile_seconds']:.0f} s",
    ]
    lines += [f"  to fit: {remedy}" for remedy in remedies(record, hbm_gib)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the table

TABLE_SLICES = (("v4-32", 32.0, 275.0), ("v5e-16", 16.0, 197.0))
TABLE_HEADER = ("| config | model | dataset | paper metric | global batch | mesh (16 devices) | "
                "params + opt / activations / peak per device (GiB) | TFLOPs / step | "
                "v4-32 (32 GiB) | v5e-16 (16 GiB) |")


def table_row(record: dict, utilization: float = 0.4) -> str:
    b = record["bytes"]
    state = (b["params"] + b["optimizer"] + b["batch_stats"]) / GIB
    metric = (f"{record['metric']}: {record['value']:g} ({record['table']})" if record["value"]
              else record["metric"])
    cells = []
    for _, hbm, peak in TABLE_SLICES:
        cells.append(f"{verdict(record, hbm)}, {step_seconds(record, peak, utilization):.2f} s")
    mesh = record["mesh"]
    return (f"| `{record['config']}` | {record['model']} | {record['dataset']} | {metric} | "
            f"{record['global_batch']} | {mesh['data']}x{mesh['model']} "
            f"{'FSDP' if mesh['param_sharding'] == 'fsdp' else 'replicated'} | "
            f"{state:.2f} / {b['temporaries'] / GIB:.2f} / {b['peak'] / GIB:.2f} | "
            f"{record['flops']['analytic'] / 1e12:.2f} | {cells[0]} | {cells[1]} |")


def table(records: list[dict]) -> str:
    separator = "|" + "|".join("---" for _ in range(TABLE_HEADER.count("|") - 1)) + "|"
    return "\n".join([TABLE_HEADER, separator] + [table_row(r) for r in records])


# ----------------------------------------------------------------------------- main


BEGIN, END = "<!-- plan-table -->", "<!-- /plan-table -->"


def record_name(spec: str) -> str:
    """configs/segformer_ade20k.py:b0 -> segformer_ade20k_b0."""
    path, _, arg = spec.partition(":")
    return "_".join(filter(None, [Path(path).stem, arg.replace(",", "_")]))


def plan_all(directory: Path, devices: int) -> list[Path]:
    """Plans every reproduction config in its own process; returns the record paths."""
    import subprocess  # pylint: disable=import-outside-toplevel
    from configs import common  # pylint: disable=import-outside-toplevel

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in common.reproduction_specs():
        path = directory / f"{record_name(spec)}.json"
        paths.append(path)
        if path.exists():
            continue
        started = time.perf_counter()
        result = subprocess.run([sys.executable, __file__, f"--config={spec}",
                                 f"--devices={devices}", f"--json={path}"],
                                capture_output=True, text=True, cwd=ROOT)
        (directory / f"{record_name(spec)}.log").write_text(result.stdout + result.stderr)
        print(f"{spec}: {'ok' if result.returncode == 0 else 'FAILED'} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return [p for p in paths if p.exists()]


def write_table(markdown: str, path: Path) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{rest.split(END, 1)[1]}")


def _base_config(values: flags.FlagValues):
    """Without --config: only --table/--all, which plan no config of their own."""
    if not (values.table or values.all):
        raise cli.UsageError("--config path/to/config.py[:arg] is required (or --table/--all)")
    return config_lib.base_config()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    values, config = cli.parse(argv, define_flags, doc=__doc__,
                               program="python experiments/plan.py",
                               default_config=_base_config)
    if values.table or values.all:
        paths = (plan_all(Path(values.all), values.devices or 16) if values.all
                 else [Path(p) for p in values.table])
        markdown = table([json.loads(p.read_text()) for p in paths])
        if values.write:
            write_table(markdown, Path(values.write))
        else:
            print(markdown)
        return 0
    from configs import common  # pylint: disable=import-outside-toplevel
    slice_info = common.SLICES.get(str(config.reproduction.slice))
    devices = values.devices or (slice_info.devices if slice_info else len(jax.devices()))
    if devices > len(jax.devices()):
        raise cli.UsageError(f"--devices={devices} but JAX has {len(jax.devices())} devices "
                             "(run this script directly: it sets the count before JAX starts)")
    hbm = values.hbm or (slice_info.hbm_gib if slice_info else 16.0)
    peak = values.peak_tflops or (slice_info.peak_tflops if slice_info else 197.0)
    record = plan(config, devices)
    record["config"] = _config_spec(argv)
    record["overrides"] = [a for a in argv if a.startswith("--config.")]
    print(describe(record, hbm, peak, values.utilization))
    if values.json:
        Path(values.json).parent.mkdir(parents=True, exist_ok=True)
        Path(values.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


def define_flags(values: flags.FlagValues) -> None:
    """The command line's flags besides --config (cli.parse defines that one)."""
    flags.DEFINE_integer("devices", None, "Simulated devices (default: the config's slice).",
                         flag_values=values)
    flags.DEFINE_float("hbm", None, "HBM per device, GiB (default: the config's slice).",
                       flag_values=values)
    flags.DEFINE_float("peak_tflops", None, "bf16 peak per device (default: the slice's).",
                       flag_values=values)
    flags.DEFINE_float("utilization", 0.4, "Fraction of the peak the step time assumes.",
                       flag_values=values)
    flags.DEFINE_string("json", None, "Write the plan record here.", flag_values=values)
    flags.DEFINE_multi_string("table", None, "Print the Markdown table of these JSON records.",
                              flag_values=values)
    flags.DEFINE_string("all", None, "Plan every reproduction config (configs/common.py) on "
                        "--devices, one process each, writing <dir>/<config>.json (existing "
                        "records are kept), then print the table.", flag_values=values)
    flags.DEFINE_string("write", None, "With --table/--all: replace the table in this Markdown "
                        "file (between the plan-table markers) instead of printing it.",
                        flag_values=values)


if __name__ == "__main__":
    cli.run(main)
