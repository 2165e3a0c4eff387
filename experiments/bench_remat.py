"""Rematerialisation: the train step's memory and time under each `config.train.remat` setting.

    python experiments/bench_remat.py --config configs/deeplabv3plus_camvid.py \
        --crop 512 512 --batch 8 --time_batch 2

For each variant ('none', 'blocks:nothing', 'blocks:conv_outputs', ...:
config.train.remat, then the policy after ':') the train step of the config's model is
compiled for one device from abstract arguments (nothing is allocated) and
XLA's `memory_analysis()` gives its temporaries (activations kept for the
backward pass and scratch), `cost_analysis()` its FLOPs. With --time_batch,
the variants then take --time_steps steps each at that batch size, in turn
(A B C A B C ..., after a warm-up step each, so a change in the machine's
load touches every variant alike), and the median seconds per step is
reported. Prints a Markdown table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segjax import config as config_lib, runtime, sharding  # noqa: E402
from segjax.models import registry  # noqa: E402
from segjax.models.policy import ApplyPolicy  # noqa: E402
from segjax.train import state as state_lib, step as step_lib  # noqa: E402


def _batch_shapes(config, batch: int, crop) -> dict:
    channels = int(config.data.image_channels)
    shapes = {"image": jax.ShapeDtypeStruct((batch, *crop, channels), jnp.float32),
              "label": jax.ShapeDtypeStruct((batch, *crop), jnp.int32)}
    if config.loss.use_weight_map:
        shapes["weight"] = jax.ShapeDtypeStruct((batch, *crop), jnp.float32)
    return shapes


def _policy(config, variant: str) -> ApplyPolicy:
    levels, _, policy = variant.rpartition(":")
    if policy not in config_lib.CHOICES["train.remat_policy"]:
        levels, policy = variant, ""
    return ApplyPolicy(compute_dtype=str(config.model.dtype),
                       remat=config_lib.remat_levels(levels),
                       remat_policy=policy or "nothing")


def measure(config, variant: str, batch: int, crop) -> dict:
    model = registry.build(config.model)
    mesh = sharding.make_mesh({"data": 1, "model": 1}, jax.devices()[:1])
    policy = _policy(config, variant)
    train_fn = step_lib.compile_train_step(
        mesh, model=model, loss_config=config.loss, num_classes=int(config.model.num_classes),
        ignore_index=int(config.data.ignore_index), policy=policy)
    state = state_lib.train_state_shapes(config, model, (1, *crop, int(config.data.image_channels)))
    rng = jax.random.fold_in(runtime.key(0), 1)

    started = time.perf_counter()
    compiled = train_fn.lower(state, _batch_shapes(config, batch, crop), rng).compile()
    row = {"variant": variant, "compile_seconds": time.perf_counter() - started}
    memory = compiled.memory_analysis()
    row.update(temp_bytes=int(memory.temp_size_in_bytes),
               argument_bytes=int(memory.argument_size_in_bytes),
               output_bytes=int(memory.output_size_in_bytes),
               alias_bytes=int(memory.alias_size_in_bytes))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    row["gflops"] = float(cost.get("flops", float("nan"))) / 1e9
    return row


class Stepper:
    """One variant's compiled train step on random data, stepped on demand."""

    def __init__(self, config, variant: str, crop, batch: int):
        model = registry.build(config.model)
        mesh = sharding.make_mesh({"data": 1, "model": 1}, jax.devices()[:1])
        self.train_fn, self.state, self.data = _build(
            config, model, _policy(config, variant), mesh, crop, batch)
        self.rng = jax.random.fold_in(runtime.key(0), 1)
        self.seconds = []
        self.step(record=False)  # compiles

    def step(self, record: bool = True) -> None:
        started = time.perf_counter()
        self.state, metrics = self.train_fn(self.state, self.data, self.rng)
        jax.block_until_ready(metrics)
        if record:
            self.seconds.append(time.perf_counter() - started)


def _build(config, model, policy, mesh, crop, batch):
    train_fn = step_lib.compile_train_step(
        mesh, model=model, loss_config=config.loss, num_classes=int(config.model.num_classes),
        ignore_index=int(config.data.ignore_index), policy=policy)
    channels = int(config.data.image_channels)
    state, _ = state_lib.create_train_state(config, model, (1, *crop, channels), mesh)
    generator = np.random.default_rng(0)
    data = {"image": generator.normal(size=(batch, *crop, channels)).astype(np.float32),
            "label": generator.integers(0, int(config.model.num_classes),
                                        (batch, *crop)).astype(np.int32)}
    if config.loss.use_weight_map:
        data["weight"] = np.ones((batch, *crop), np.float32)
    return train_fn, state, sharding.global_batch(data, mesh)


def time_variants(config, variants, crop, batch: int, steps: int) -> list[float]:
    """Median seconds per step of each variant, the variants stepping in turn."""
    steppers = [Stepper(config, variant, crop, batch) for variant in variants]
    for _ in range(steps):
        for stepper in steppers:
            stepper.step()
    return [statistics.median(stepper.seconds) for stepper in steppers]


def table(rows, batch, crop, time_batch) -> str:
    base = rows[0]
    lines = [f"| remat (levels:policy) | temporaries at batch {batch}, {crop[0]}x{crop[1]} | "
             "vs none | GFLOPs | vs none | compile s |"
             + (f" s/step at batch {time_batch} | vs none |" if time_batch else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if time_batch else "")]
    for row in rows:
        line = (f"| {row['variant']} | {row['temp_bytes'] / 2**20:,.0f} MiB | "
                f"{row['temp_bytes'] / base['temp_bytes']:.2f}x | {row['gflops']:,.0f} | "
                f"{row['gflops'] / base['gflops']:.2f}x | {row['compile_seconds']:.0f} |")
        if time_batch:
            line += (f" {row['seconds_per_step']:.2f} | "
                     f"{row['seconds_per_step'] / base['seconds_per_step']:.2f}x |")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/deeplabv3plus_camvid.py")
    parser.add_argument("--crop", type=int, nargs="+", default=[512, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--variants", nargs="+",
                        default=["none", "blocks:nothing", "blocks:conv_outputs"])
    parser.add_argument("--dtype", default=None, help="config.model.dtype override")
    parser.add_argument("--time_batch", type=int, default=0)
    parser.add_argument("--time_steps", type=int, default=2)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    config = config_lib.load(args.config)
    if args.dtype:
        config.unlock()
        config.model.dtype = args.dtype
    runtime.configure(config)
    crop = tuple(args.crop)
    rows = []
    for variant in args.variants:
        rows.append(measure(config, variant, args.batch, crop))
        print(json.dumps(rows[-1]), flush=True)
    if args.time_batch:
        for row, seconds in zip(rows, time_variants(config, args.variants, crop,
                                                    args.time_batch, args.time_steps)):
            row["seconds_per_step"] = seconds
            print(json.dumps(row), flush=True)
    print(table(rows, args.batch, crop, args.time_batch))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
