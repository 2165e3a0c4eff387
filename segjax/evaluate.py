"""Evaluate a trained model on a labelled split: IoU, accuracy, Dice, confusion matrix.

    python -m segjax.evaluate --workdir runs/deeplab_camvid --split val
    python -m segjax.evaluate --workdir runs/deeplab_camvid --split val --flip \\
        --scales 0.5,0.75,1,1.25,1.5,1.75 --crf --output runs/deeplab_camvid/eval_msc_flip_crf

`--split val` (or `train`) means the run's `config.data.val_split`
(`train_split`), e.g. ISBI's held-out `train[25:30]`; any other value is a
split expression of the data source (`test`, `val[:10]`). Test-time options
default to the run's `config.eval` and are overridden by the flags (see
`segjax.predict`).

Writes to --output (default `<workdir>/eval_<split>`):
  metrics.json      per-class IoU / accuracy / Dice, mIoU, pixel accuracy, mean Dice,
                    the confusion matrix, the options and the time per image
  metrics.md        the same as a Markdown table
  confusion.png     the row-normalised confusion matrix
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from segjax import inference, metrics as metrics_lib, predict


def split_expression(config, split: str) -> str:
    """'val' / 'train' -> the config's split expression; anything else unchanged."""
    key = f"{split}_split"
    return str(config.data[key]) if split in ("train", "val") and key in config.data else split


def evaluate(predict_fn, config, examples, options: inference.EvalOptions, *,
             progress: bool = True) -> dict:
    """Metrics (metrics_from_confusion + confusion matrix + timing) over labelled examples."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    num_classes = int(config.model.num_classes)
    ignore_index = int(config.data.ignore_index)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    seconds = []
    for example in tqdm(examples, desc="evaluate", unit="image", disable=not progress):
        name = example.get("name", "?")
        if example.get("label") is None:
            raise ValueError(f"evaluate: example {name!r} has no label; evaluate a labelled split")
        label = np.asarray(example["label"])
        metrics_lib.validate_labels(label, num_classes, ignore_index, where=f"label of {name}")
        start = time.perf_counter()
        probs = inference.predict_image(predict_fn, np.asarray(example["image"]), config.data,
                                        options, num_classes)
        prediction = np.argmax(probs, axis=-1).astype(np.int32)
        seconds.append(time.perf_counter() - start)
        confusion += np.asarray(metrics_lib.confusion_matrix(
            prediction[None], label[None], num_classes=num_classes, ignore_index=ignore_index),
            np.int64)
    class_names = tuple(config.data.get("class_names", ())) or None
    result = metrics_lib.metrics_from_confusion(confusion, class_names)
    result["confusion_matrix"] = confusion.tolist()
    result["num_images"] = len(seconds)
    # The first image includes compilation; the steady-state time excludes it.
    result["seconds_per_image"] = float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))
    result["seconds_first_image"] = float(seconds[0]) if seconds else float("nan")
    return result


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Row-normalised confusion matrix as a PNG (rows: true class, columns: predicted)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    confusion = np.asarray(confusion, np.float64)
    rows = confusion.sum(1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    shown = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=90)
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(class_names) <= 25:
        for (row, column), value in np.ndenumerate(normalised):
            axes.text(column, row, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                      color="white" if value > 0.5 else "black")
    figure.colorbar(shown, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def markdown_report(result: dict, class_names: Sequence[str], options, split: str) -> str:
    table = metrics_lib.format_metrics_table(result, class_names)
    lines = [f"# Evaluation on {split} ({result['num_images']} images)", "",
             f"- mIoU: {100 * result['miou']:.2f}",
             f"- pixel accuracy: {100 * result['pixel_accuracy']:.2f}",
             f"- mean accuracy: {100 * result['mean_accuracy']:.2f}",
             f"- mean Dice: {100 * result['dice']:.2f}",
             f"- seconds per image: {result['seconds_per_image']:.3f} "
             f"(first, with compilation: {result['seconds_first_image']:.3f})",
             f"- options: scales {list(options.scales)}, flip {options.flip}, "
             f"tile {list(options.tile) or 'whole image'}, crf {options.crf}", "", table, ""]
    return "\n".join(lines)


def write_reports(result: dict, config, options: inference.EvalOptions, split: str,
                  output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    num_classes = int(config.model.num_classes)
    class_names = (list(config.data.get("class_names", ()))
                   or [f"class {i}" for i in range(num_classes)])
    record = dict(result, split=split, options={
        "tile": list(options.tile), "overlap": options.overlap, "blend": options.blend,
        "scales": list(options.scales), "flip": options.flip, "crf": options.crf,
        "crf_params": vars(options.crf_params) if options.crf else None})
    (output / "metrics.json").write_text(json.dumps(record, indent=2, allow_nan=True))
    (output / "metrics.md").write_text(markdown_report(result, class_names, options, split))
    plot_confusion(np.asarray(result["confusion_matrix"]), class_names, output / "confusion.png")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m segjax.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_checkpoint_flags(parser)
    parser.add_argument("--split", default="val",
                        help="'val'/'train' (the config's splits) or a split expression")
    parser.add_argument("--output", help="report directory (default <run>/eval_<split>)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N images only")
    parser.add_argument("--no_progress", action="store_true")
    predict.add_eval_flags(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from segjax.data import pipeline  # pylint: disable=import-outside-toplevel
    args = parse_args(argv)
    predict_fn, config = predict.load_model(args.workdir, args.checkpoint)
    options = predict.eval_options(config, args)
    split = split_expression(config, args.split)
    examples = pipeline.load_split(config.data, split)
    if args.limit:
        examples = examples[:args.limit]
    result = evaluate(predict_fn, config, examples, options, progress=not args.no_progress)
    run = Path(args.workdir) if args.workdir else Path(args.checkpoint).parent
    output = Path(args.output) if args.output else run / f"eval_{args.split}"
    write_reports(result, config, options, split, output)
    print((output / "metrics.md").read_text())
    print(f"wrote {output}/metrics.json, metrics.md, confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
