"""Evaluate a trained model on a labelled split: IoU, accuracy, Dice, confusion matrix.

    python -m segjax.evaluate --workdir runs/deeplab_camvid --split val
    python -m segjax.evaluate --workdir runs/deeplab_camvid --split val --flip \\
        --scales 0.5,0.75,1,1.25,1.5,1.75 --crf --output runs/deeplab_camvid/eval_msc_flip_crf

`--split val` (or `train`) means the run's `config.data.val_split`
(`train_split`), e.g. ISBI's held-out `train[25:30]`; any other value is a
split expression of the data source (`test`, `val[:10]`). Test-time options
default to the run's `config.eval` and are overridden by the flags
(`segjax.cli`). The evaluation itself is `segjax.evaluation.evaluate`, the
same pass the train loop runs at its evaluation steps. A volumetric run's
split holds volumes (`segjax.data.volume_sources`): each is predicted whole by the
sliding window of config.eval, and IoU and Dice per class count voxels.

Writes to --output (default `<workdir>/eval_<split>`):
  metrics.json      per-class IoU / accuracy / Dice, mIoU, pixel accuracy, mean Dice,
                    the confusion matrix, the options and the time per image; for
                    panoptic models also PQ, SQ, RQ per class and over things and stuff
  metrics.md        the same as a Markdown table
  confusion.png     the row-normalised confusion matrix
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from segjax import cli, evaluation
from segjax.data.sources import load_split


def split_expression(config, split: str) -> str:
    """'val' / 'train' -> the config's split expression; anything else unchanged."""
    key = f"{split}_split"
    return str(config.data[key]) if split in ("train", "val") and key in config.data else split


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m segjax.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_checkpoint_flags(parser)
    parser.add_argument("--split", default="val",
                        help="'val'/'train' (the config's splits) or a split expression")
    parser.add_argument("--output", help="report directory (default <run>/eval_<split>)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N images only")
    parser.add_argument("--no_progress", action="store_true")
    cli.add_eval_flags(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loaded = cli.load_model(args)
    config = loaded.config
    options = cli.eval_options(config, args)
    split = split_expression(config, args.split)
    examples = load_split(config.data, split)
    if args.limit:
        examples = examples[:args.limit]
    result, _ = evaluation.evaluate(loaded.predict_fn, config, examples, options,
                                    progress=not args.no_progress,
                                    panoptic_fn=loaded.panoptic_fn)
    run = Path(args.workdir) if args.workdir else Path(args.checkpoint).parent
    output = Path(args.output) if args.output else run / f"eval_{args.split}"
    evaluation.write_reports(result, config, options, split, output)
    print((output / "metrics.md").read_text())
    print(f"wrote {output}/metrics.json, metrics.md, confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
