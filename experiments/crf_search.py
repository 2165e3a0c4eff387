"""Choose the dense CRF's kernel parameters for a trained model by a small grid search.

DeepLab v1/v2 cross-validated the CRF's bilateral weight and widths on held-out
images rather than using one setting for every dataset (their VOC values,
segjax's defaults, assume 500x375 VOC photos). This predicts each image of a
split once (single scale), then runs the CRF with every parameter set of the
grid and prints mIoU per set, with "no CRF" as the first row:

    python experiments/crf_search.py --workdir runs/dlv3p_camvid_cpu --split 'train[:24]'

Search on training frames (or a held-out part of val), never on the frames
you report: then pass the best row to
`python -m segjax.evaluate ... --config.eval.crf=True --config.eval.crf_params.bi_w=..`
(and `.bi_xy_std`, `.bi_rgb_std`, `.pos_w`).
"""

from __future__ import annotations

import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from absl import flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segjax import checkpoints, cli, evaluate, evaluation, inference  # noqa: E402
from segjax import metrics as metrics_lib, runtime  # noqa: E402
from segjax.config import EvalOptions  # noqa: E402
from segjax.data.sources import load_split  # noqa: E402
from segjax.ops import crf as crf_lib  # noqa: E402

GRID = (("bi_w", ["3", "5"]), ("bi_xy_std", ["20", "50", "80"]), ("bi_rgb_std", ["3", "5", "10"]),
        ("pos_w", ["3"]))


def define_flags(values: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(values)
    flags.DEFINE_string("split", "train[:24]", "Split expression to search on.",
                        flag_values=values)
    for name, default in GRID:
        flags.DEFINE_list(name, default, f"CRF {name} values to try.", flag_values=values)
    flags.DEFINE_integer("iterations", 10, "Mean-field iterations.", flag_values=values)


def grid(values) -> list[crf_lib.CRFParams]:
    axes = [[float(v) for v in values[name].value] for name, _ in GRID]
    return [crf_lib.CRFParams(iterations=values.iterations, bi_w=w, bi_xy_std=xy, bi_rgb_std=rgb,
                              pos_w=pos)
            for w, xy, rgb, pos in itertools.product(*axes)]


def miou(predictions, labels, num_classes: int, ignore_index: int) -> float:
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for prediction, label in zip(predictions, labels):
        confusion += np.asarray(metrics_lib.confusion_matrix(
            prediction[None], label[None], num_classes=num_classes, ignore_index=ignore_index))
    return float(metrics_lib.metrics_from_confusion(confusion)["miou"])


def main(argv=None) -> int:
    values, config = cli.parse(argv, define_flags, doc=__doc__,
                               program="python experiments/crf_search.py",
                               default_config=cli.run_config)
    runtime.configure(config)
    checkpoint = checkpoints.load(cli.checkpoint_path(values), config)
    predict_fn, _ = evaluation.predict_functions(checkpoint.model, checkpoint.variables, config)
    num_classes = int(config.model.num_classes)
    ignore_index = int(config.data.ignore_index)
    split = evaluate.split_expression(config, values.split)
    examples = load_split(config.data, split)
    options = EvalOptions(crf=False)
    images = [np.asarray(e["image"]) for e in examples]
    labels = [np.asarray(e["label"]) for e in examples]
    probs = [inference.predict_image(predict_fn, image, config.data, options, num_classes)
             for image in images]
    rows = [("no CRF", miou([p.argmax(-1) for p in probs], labels, num_classes, ignore_index),
             0.0)]
    for params in grid(values):
        start = time.perf_counter()
        refined = [crf_lib.dense_crf(image, p, params).argmax(-1)
                   for image, p in zip(images, probs)]
        seconds = (time.perf_counter() - start) / len(images)
        name = (f"bi_w={params.bi_w:g},bi_xy_std={params.bi_xy_std:g},"
                f"bi_rgb_std={params.bi_rgb_std:g},pos_w={params.pos_w:g}")
        rows.append((name, miou(refined, labels, num_classes, ignore_index), seconds))
        print(f"{name}: mIoU {100 * rows[-1][1]:.2f} ({seconds:.2f} s/image)", flush=True)
    print(f"\n`python {shlex.join(sys.argv)}` on {split} ({len(images)} images, "
          f"{config.model.name})\n")
    print("| CRF parameters | mIoU | CRF s/image |\n| --- | --- | --- |")
    for name, value, seconds in rows:
        print(f"| {name} | {100 * value:.2f} | {seconds:.2f} |")
    best = max(rows[1:], key=lambda row: row[1])
    print(f"\nbest: {best[0]} (mIoU {100 * best[1]:.2f} vs {100 * rows[0][1]:.2f} "
          "without the CRF)")
    return 0


if __name__ == "__main__":
    cli.run(main)
