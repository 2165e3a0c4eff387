"""Choose the dense CRF's kernel parameters for a trained model by a small grid search.

DeepLab v1/v2 cross-validated the CRF's bilateral weight and widths on held-out
images rather than using one setting for every dataset (their VOC values,
segjax's defaults, assume 500x375 VOC photos). This predicts each image of a
split once (single scale), then runs the CRF with every parameter set of the
grid and prints mIoU per set, with "no CRF" as the first row:

    python experiments/crf_search.py --workdir runs/dlv3p_camvid_cpu --split 'train[:24]'

Search on training frames (or a held-out part of val), never on the frames
you report: then pass the best row to
`python -m segjax.evaluate ... --crf --crf_params bi_w=..,bi_xy_std=..,bi_rgb_std=..`.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segjax import cli, evaluate, inference, metrics as metrics_lib  # noqa: E402
from segjax.ops import crf as crf_lib  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_checkpoint_flags(parser)
    parser.add_argument("--split", default="train[:24]", help="split expression to search on")
    parser.add_argument("--bi_w", type=cli.comma_floats, default=(3.0, 5.0))
    parser.add_argument("--bi_xy_std", type=cli.comma_floats, default=(20.0, 50.0, 80.0))
    parser.add_argument("--bi_rgb_std", type=cli.comma_floats, default=(3.0, 5.0, 10.0))
    parser.add_argument("--pos_w", type=cli.comma_floats, default=(3.0,))
    parser.add_argument("--iterations", type=int, default=10)
    return parser.parse_args(argv)


def grid(args) -> list[crf_lib.CRFParams]:
    return [crf_lib.CRFParams(iterations=args.iterations, bi_w=w, bi_xy_std=xy, bi_rgb_std=rgb,
                              pos_w=pos)
            for w, xy, rgb, pos in itertools.product(args.bi_w, args.bi_xy_std, args.bi_rgb_std,
                                                     args.pos_w)]


def miou(predictions, labels, num_classes: int, ignore_index: int) -> float:
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for prediction, label in zip(predictions, labels):
        confusion += np.asarray(metrics_lib.confusion_matrix(
            prediction[None], label[None], num_classes=num_classes, ignore_index=ignore_index))
    return float(metrics_lib.metrics_from_confusion(confusion)["miou"])


def main(argv=None) -> int:
    from segjax.data.sources import load_split  # pylint: disable=import-outside-toplevel
    args = parse_args(argv)
    loaded = cli.load_model(args)
    predict_fn, config = loaded.predict_fn, loaded.config
    num_classes = int(config.model.num_classes)
    ignore_index = int(config.data.ignore_index)
    split = evaluate.split_expression(config, args.split)
    examples = load_split(config.data, split)
    options = inference.EvalOptions(crf=False)
    images = [np.asarray(e["image"]) for e in examples]
    labels = [np.asarray(e["label"]) for e in examples]
    probs = [inference.predict_image(predict_fn, image, config.data, options, num_classes)
             for image in images]
    rows = [("no CRF", miou([p.argmax(-1) for p in probs], labels, num_classes, ignore_index),
             0.0)]
    for params in grid(args):
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
    print(f"\nbest: --crf_params {best[0]} (mIoU {100 * best[1]:.2f} vs {100 * rows[0][1]:.2f} "
          "without the CRF)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
