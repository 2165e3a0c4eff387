"""Dense CRF: segjax.ops.crf against pydensecrf2 on real CamVid frames (agreement and speed).

    .venv/bin/pip install pydensecrf2        # test-only reference; compiles from source
    .venv/bin/python experiments/bench_crf.py --num_images 10
    .venv/bin/python experiments/bench_crf.py --probs_dir runs/x/probs   # a model's .npy outputs

Unaries: by default noisy probabilities made from the ground truth
(softmax(3 * onehot + 1.5 * N(0, 1)), about 67% pixel accuracy), so the
comparison needs no trained model; with --probs_dir, the (H, W, K) float
probabilities `segjax.predict --probabilities` wrote, one `<stem>.npy` per frame.
Both CRFs use DeepLab v2's parameters and the same normalisation. Reported per
image and on average: label agreement between the two, mean |Q_segjax - Q_ref|,
pixel accuracy against the labels (unary / segjax / reference, void ignored)
and seconds per image (segjax: lattice build on the host + compiled mean field,
after a warm-up image; reference: its whole C++ inference).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from segjax.ops import crf  # noqa: E402  pylint: disable=wrong-import-position


def noisy_probs(label: np.ndarray, seed: int, classes: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = 3 * np.eye(classes)[np.minimum(label, classes - 1)]
    logits = logits + 1.5 * rng.normal(size=logits.shape)
    logits -= logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def reference_crf(image: np.ndarray, probs: np.ndarray, params: crf.CRFParams) -> np.ndarray:
    import pydensecrf.densecrf as dcrf  # pylint: disable=import-outside-toplevel
    height, width, classes = probs.shape
    normalization = {"after": dcrf.NORMALIZE_AFTER,
                     "symmetric": dcrf.NORMALIZE_SYMMETRIC}[params.normalization]
    model = dcrf.DenseCRF2D(width, height, classes)
    unary = -np.log(np.clip(probs, 1e-8, 1.0)).reshape(-1, classes).T
    model.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
    model.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w,
                              normalization=normalization)
    model.addPairwiseBilateral(sxy=params.bi_xy_std, srgb=params.bi_rgb_std,
                               rgbim=np.array(image, np.uint8, copy=True, order="C"),
                               compat=params.bi_w, normalization=normalization)
    return np.array(model.inference(params.iterations)).T.reshape(height, width, classes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "camvid"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--num_images", type=int, default=5)
    parser.add_argument("--normalization", default="after", choices=crf.NORMALIZATIONS)
    parser.add_argument("--probs_dir", help="directory of <stem>.npy probabilities")
    parser.add_argument("--json", help="write the per-image records here")
    args = parser.parse_args(argv)
    params = crf.CRFParams(normalization=args.normalization)
    root = Path(args.data) / args.split
    paths = sorted((root / "images").iterdir())[:args.num_images + 1]
    records = []
    for index, path in enumerate(paths):
        image = np.asarray(Image.open(path).convert("RGB"))
        label = np.asarray(Image.open(root / "labels" / path.name)).astype(np.int64)
        probs = (np.load(Path(args.probs_dir) / f"{path.stem}.npy").astype(np.float32)
                 if args.probs_dir else noisy_probs(label, index))
        start = time.perf_counter()
        ours = crf.dense_crf(image, probs, params)
        ours_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = reference_crf(image, probs, params)
        theirs_seconds = time.perf_counter() - start
        if index == 0:
            print(f"warm-up (compilation) image: segjax {ours_seconds:.2f}s")
            continue
        valid = label < probs.shape[-1]
        accuracy = lambda q: float((q.argmax(-1) == label)[valid].mean())
        record = {"image": path.name, "agreement": float((ours.argmax(-1)
                                                         == theirs.argmax(-1)).mean()),
                  "mean_abs_q": float(np.abs(ours - theirs).mean()),
                  "acc_unary": accuracy(probs), "acc_segjax": accuracy(ours),
                  "acc_reference": accuracy(theirs),
                  "seconds_segjax": ours_seconds, "seconds_reference": theirs_seconds}
        records.append(record)
        print(json.dumps(record))
    keys = [k for k in records[0] if k != "image"]
    summary = {key: float(np.mean([r[key] for r in records])) for key in keys}
    print(f"\nmean over {len(records)} images ({args.normalization} normalisation, "
          f"{image.shape[0]}x{image.shape[1]}):")
    for key, value in summary.items():
        print(f"  {key:18s} {value:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"records": records, "mean": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
