"""Which U-Net recipe learns most on ISBI 2012 in the demo's budget (docs/isbi_demo.md).

    python experiments/isbi_recipes.py --recipes paper,plain,plain_lr3e-4 --steps 160
    python experiments/isbi_recipes.py --recipes default --minutes 15

Each recipe is `configs/unet_isbi.py` (its default, or an argument such as `:paper`)
plus command-line overrides; each runs `python -m segjax.main` in its own process and
workdir (runs/isbi_recipes/<recipe>), either for a fixed number of steps (`--steps`, which
compares learning per step independently of the machine's load) or for the demo's wall-clock
budget (`--minutes`). The table gives the steps taken, the median seconds per step, and the
held-out (slices 25-29) mIoU, per-class IoU and pixel accuracy of the last evaluation.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

NO_WEIGHT_MAP = ("--config.data.weight_map.enabled=False", "--config.loss.use_weight_map=False")
NO_ELASTIC = ("--config.data.augment.elastic_sigma=0",)
RECIPES = {
    # configs/unet_isbi.py:paper: the paper's recipe (weight map w0=10, elastic, Adam 1e-4).
    "paper": (":paper", ()),
    # The plain PyTorch script of docs/isbi_demo.md: no weight map, no elastic deformation.
    "plain": (":paper", NO_WEIGHT_MAP + NO_ELASTIC),
    "paper_no_weight_map": (":paper", NO_WEIGHT_MAP),
    "paper_no_elastic": (":paper", NO_ELASTIC),
    "paper_w0_3": (":paper", ("--config.data.weight_map.w0=3",)),
    "plain_lr3e-4": (":paper", NO_WEIGHT_MAP + NO_ELASTIC + ("--config.optim.learning_rate=3e-4",)),
    "plain_lr1e-3": (":paper", NO_WEIGHT_MAP + NO_ELASTIC + ("--config.optim.learning_rate=1e-3",)),
    "plain_lr3e-4_tile684": (":paper", NO_WEIGHT_MAP + NO_ELASTIC + (
        "--config.optim.learning_rate=3e-4", "--config.data.crop=(684,684)",
        "--config.eval.tile=(684,684)")),
    "plain_lr3e-4_inprocess": (":paper", NO_WEIGHT_MAP + NO_ELASTIC + (
        "--config.optim.learning_rate=3e-4", "--config.data.num_workers=0")),
    # The demo's default recipe (configs/unet_isbi.py without argument).
    "default": ("", ()),
}


def run(recipe: str, budget: tuple[str, ...], root: Path) -> dict:
    arg, overrides = RECIPES[recipe]
    workdir = root / recipe
    command = [sys.executable, "-m", "segjax.main", "--config", f"configs/unet_isbi.py{arg}",
               "--workdir", str(workdir), "--config.train.progress_bar=False", *budget,
               *overrides]
    print("+", shlex.join(command), flush=True)
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{recipe} failed:\n{result.stderr[-3000:]}")
    evaluation = json.loads((workdir / "eval_metrics.json").read_text())
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    rates = [r["train/steps_per_second"] for r in records if r.get("train/steps_per_second")]
    return {"recipe": recipe, "steps": evaluation["step"],
            "seconds_per_step": 1 / statistics.median(rates) if rates else float("nan"),
            "miou": evaluation["miou"], "pixel_accuracy": evaluation["pixel_accuracy"],
            "per_class_iou": evaluation["per_class_iou"], "command": shlex.join(command[1:])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="paper,plain", help=f"of {', '.join(RECIPES)}")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="train exactly this many steps")
    budget.add_argument("--minutes", type=float, help="train for this wall-clock budget")
    parser.add_argument("--root", default="runs/isbi_recipes")
    parser.add_argument("--out", help="append each result as a JSON line to this file")
    args = parser.parse_args(argv)
    if args.steps:
        limits = (f"--config.train.steps={args.steps}", "--config.train.max_minutes=0",
                  f"--config.train.eval_every={args.steps}")
    else:
        limits = ("--config.train.steps=100000", f"--config.train.max_minutes={args.minutes}",
                  "--config.train.eval_every=100000")
    rows = []
    for recipe in args.recipes.split(","):
        rows.append(run(recipe, limits, REPO_ROOT / args.root))
        if args.out:
            with open(args.out, "a", encoding="utf-8") as file:
                file.write(json.dumps(rows[-1]) + "\n")
    print(f"\n`python {shlex.join(sys.argv)}`\n")
    print("| recipe | steps | s/step | mIoU | membrane IoU | interior IoU | pixel acc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        membrane, interior = row["per_class_iou"]
        print(f"| {row['recipe']} | {row['steps']} | {row['seconds_per_step']:.2f} | "
              f"{row['miou']:.3f} | {membrane:.3f} | {interior:.3f} | "
              f"{row['pixel_accuracy']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
