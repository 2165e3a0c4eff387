"""Evaluate a trained model on a labelled split: IoU, accuracy, Dice, confusion matrix.

    python -m segjax.evaluate --workdir runs/deeplab_camvid --split val
    python -m segjax.evaluate --workdir runs/deeplab_camvid --split val \\
        --config.eval.flip=True --config.eval.scales='(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)' \\
        --config.eval.crf=True --output runs/deeplab_camvid/eval_msc_flip_crf

`--split val` (or `train`) means the run's `config.data.val_split`
(`train_split`), e.g. ISBI's held-out `train[25:30]`; any other value is a
split expression of the data source (`test`, `val[:10]`). The config is the
run's own (or --config's) with `--config.<key>=value` overrides as for
training (`segjax.cli`); its `config.eval` holds the test-time options
(`segjax.config.EvalOptions`). The evaluation itself is `segjax.evaluation.evaluate`, the
same pass the train loop runs at its evaluation steps. A volumetric run's
split holds volumes (`segjax.data.volume_sources`): each is predicted whole by the
sliding window of config.eval, and IoU and Dice per class count voxels.

Writes to --output (default `<workdir>/eval_<split>`):
  metrics.json      per-class IoU / accuracy / Dice / precision / recall / F1, mIoU, pixel
                    accuracy, mean Dice, frequency-weighted IoU, the confusion matrix, the
                    options and the time per image; the boundary metrics config.eval.metrics
                    asks for (boundary IoU, BF score, HD95, NSD); for panoptic models also
                    PQ, SQ, RQ per class and over things and stuff
  metrics.md        the same as a Markdown table
  confusion.png     the row-normalised confusion matrix (softmax heads)

A sigmoid (multi-label, binary) model's split has channel-stack labels
(config.data.label_format='channels'); its metrics are per channel, with the
run's config.eval.thresholds (or --config.eval.thresholds=...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from absl import flags

from segjax import checkpoints, cli, evaluation, runtime
from segjax.config import EvalOptions
from segjax.data.sources import load_split
from segjax.paths import check_writable


def split_expression(config, split: str) -> str:
    """'val' / 'train' -> the config's split expression; anything else unchanged."""
    key = f"{split}_split"
    return str(config.data[key]) if split in ("train", "val") and key in config.data else split


def define_flags(values: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(values)
    flags.DEFINE_string("split", "val", "'val'/'train' (the config's splits) or a split "
                        "expression.", flag_values=values)
    flags.DEFINE_string("output", None, "Report directory (default <run>/eval_<split>).",
                        flag_values=values)
    flags.DEFINE_integer("limit", 0, "Evaluate the first N images only (0: all).",
                         lower_bound=0, flag_values=values)
    flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
    values, config = cli.parse(argv, define_flags, doc=__doc__, program="python -m segjax.evaluate",
                               default_config=cli.run_config)
    run = Path(values.workdir) if values.workdir else Path(values.checkpoint).parent
    output = Path(values.output) if values.output else run / f"eval_{values.split}"
    check_writable(output, holds="the reports", instead="another --output")
    runtime.configure(config)
    path = cli.checkpoint_path(values)
    checkpoint = checkpoints.load(path, config)
    predict_fn, panoptic_fn = evaluation.predict_functions(checkpoint.model,
                                                           checkpoint.variables, config)
    options = EvalOptions.from_config(config)
    split = split_expression(config, values.split)
    examples = load_split(config.data, split)
    if values.limit:
        examples = examples[:values.limit]
    result, _ = evaluation.evaluate(predict_fn, config, examples, options,
                                    progress=not values.no_progress, panoptic_fn=panoptic_fn)
    evaluation.write_reports(result, config, options, split, output)
    print((output / "metrics.md").read_text())
    written = ["metrics.json", "metrics.md"] + (
        ["confusion.png"] if (output / "confusion.png").is_file() else [])
    print(f"wrote {', '.join(str(output / name) for name in written)}")
    return 0


if __name__ == "__main__":
    cli.run(main)
