"""Runs reproduction configs' `:smoke` variants, several in one process, on their fixtures.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.reproduction_smoke \\
        WORKDIR configs/segformer_ade20k.py:smoke configs/cgnet_cityscapes.py:smoke ...

For every config it writes (once per dataset) the dataset's fixture
(`tests/data/layouts.py`, built into tfds records where the config reads
tfds), points `data.root` at it, and trains and evaluates with
`segjax.train.loop.train_and_evaluate` in WORKDIR/<config name>. It prints
one line per config, `SMOKE <spec> steps=<n> loss=<first>-><last> miou=<m>
seconds=<s>`, which the tests parse. One process for several configs: the
interpreter, JAX and the data code start once.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# Fixture images per split: ISBI is the real data (../shared/data); BraTS needs a held-out one.
FIXTURE_IMAGES = {"msd_brain_tumour": 3}
TFDS = {"cityscapes_panoptic": "cityscapes_panoptic", "msd_brain_tumour": "msd_brain_tumour"}


def fixture_root(dataset: str, data_dir: Path) -> str:
    """The data.root of `dataset`'s fixture under `data_dir`, written on first use."""
    from configs import common
    from tests.data import layouts

    writer = common.DATASETS[dataset][2]
    if writer == "isbi2012_em":
        from segjax.data import datasets
        return datasets.default_root("isbi2012_em")
    local = data_dir / writer
    if not local.exists():
        layouts.WRITERS[writer](local, images=FIXTURE_IMAGES.get(writer, 2))
    if writer not in TFDS:
        return str(local)
    tfds_dir = data_dir / f"{writer}_tfds"
    if not tfds_dir.exists():
        from segjax.data.builders import prepare
        source = local / "Task01_BrainTumour" if writer == "msd_brain_tumour" else local
        prepare(TFDS[writer], source, tfds_dir)
    return str(tfds_dir)


def run(spec: str, workdir: Path, data_dir: Path) -> dict:
    from segjax import config as config_lib
    from segjax.train import loop

    config = config_lib.load(spec)
    config.unlock()
    config.data.root = fixture_root(config.reproduction.dataset, data_dir)
    config.lock()
    started = time.perf_counter()
    result = loop.train_and_evaluate(config, workdir)
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    return {"steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
            "miou": float(result.get("miou", float("nan"))), "seconds": seconds}


def main(argv) -> int:
    workdir, specs = Path(argv[1]), argv[2:]
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        name = spec.replace("configs/", "").replace(".py", "").replace(":", "_").replace(",", "_")
        outcome = run(spec, workdir / name, data_dir)
        print(f"SMOKE {spec} steps={outcome['steps']} loss={outcome['first_loss']:.4f}->"
              f"{outcome['last_loss']:.4f} miou={outcome['miou']:.4f} "
              f"seconds={outcome['seconds']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
