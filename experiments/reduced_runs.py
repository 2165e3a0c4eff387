"""Reduced-budget runs of reproduction configs on this machine: the whole path, end to end.

    python experiments/reduced_runs.py --workdir /tmp/reduced --minutes 4 \\
        configs/cgnet_cityscapes.py configs/segformer_ade20k.py:b0 configs/deeplabv3plus_voc.py

Each config's `:smoke` variant (the family's small model, random weights;
configs/common.py) trains on a larger fixture of its dataset than the fast
suite's: `--images` synthetic scenes per split at `--size`, written in the
dataset's released layout (tests/data/layouts.py) and read by the same
reader a real copy goes through, with `--crop` crops, for a wall-clock budget
of `--minutes` (`train.max_minutes`: the schedule is planned over the steps
that fit), on one device, then evaluated on the whole val split. It prints one
Markdown table row per config and the command that produced them
(docs/reproductions.md holds the measured table).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python experiments/reduced_runs.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="configs/X.py[:variant]")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/segjax_reduced_runs"),
                        help="runs and fixtures go here (a run's folder must not exist)")
    parser.add_argument("--minutes", type=float, default=4.0,
                        help="training budget per config (train.max_minutes)")
    parser.add_argument("--images", type=int, default=40, help="fixture images per split")
    parser.add_argument("--size", default="128x256", help="fixture image size, HxW")
    parser.add_argument("--crop", type=int, default=128, help="square training crop")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    return parser.parse_args(argv)


def fixture(dataset: str, data_dir: Path, images: int, size: tuple[int, int]) -> str:
    """data.root of a `dataset` fixture of `images` scenes per split at `size` (written once)."""
    from configs import common
    from tests.data import layouts

    writer = common.DATASETS[dataset][2]
    root = data_dir / f"{writer}_{images}x{size[0]}x{size[1]}"
    if not root.exists():
        layouts.WRITERS[writer](root, images=images, size=size)
    return str(root)


def smoke_spec(spec: str) -> str:
    """configs/X.py[:variant] -> its :smoke variant's spec."""
    return spec + (",smoke" if ":" in spec else ":smoke")


def reduced_config(spec: str, data_dir: Path, args: argparse.Namespace):
    from segjax import config as config_lib

    config = config_lib.load(smoke_spec(spec))
    config.unlock()
    size = tuple(int(v) for v in args.size.split("x"))
    config.data.root = fixture(config.reproduction.dataset, data_dir, args.images, size)
    config.data.crop = (args.crop, args.crop)
    config.data.batch_size = args.batch
    config.data.val_split = "val"
    config.train.steps = 100_000               # the budget decides how many run
    config.train.max_minutes = args.minutes
    config.train.eval_every = config.train.checkpoint_every = 100_000
    config.train.log_every = 10
    config.train.progress_bar = False
    if config.eval.tile:
        config.eval.tile = tuple(config.data.crop)
    config.lock()
    return config


def run(spec: str, workdir: Path, data_dir: Path, args: argparse.Namespace) -> dict:
    from segjax.train import loop

    config = reduced_config(spec, data_dir, args)
    started = time.perf_counter()
    result = loop.train_and_evaluate(config, workdir)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    training = json.loads((workdir / "eval_metrics.json").read_text()).get("training", {})
    return {"model": config.model.name, "dataset": config.reproduction.dataset,
            "steps": training.get("steps", "?"), "first_loss": losses[0],
            "last_loss": losses[-1], "miou": float(result["miou"]),
            "pixel_accuracy": float(result.get("pixel_accuracy", float("nan"))),
            "minutes": (time.perf_counter() - started) / 60}


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    data_dir = args.workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    print("| config | model | dataset fixture | steps in budget | loss first -> last | "
          "val mIoU | pixel acc. | wall minutes |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.configs:
        name = Path(spec.split(":")[0]).stem + spec.partition(":")[2].replace(",", "_")
        row = run(spec, args.workdir / name, data_dir, args)
        print(f"| `{smoke_spec(spec)}` | {row['model']} | {row['dataset']}: {args.images} x "
              f"{args.size} per split, {args.crop}^2 crops, batch {args.batch} | "
              f"{row['steps']} | {row['first_loss']:.3f} -> {row['last_loss']:.3f} | "
              f"{row['miou']:.3f} | {row['pixel_accuracy']:.3f} | {row['minutes']:.1f} |",
              flush=True)
    print("\ncommand: python experiments/reduced_runs.py " +
          " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
