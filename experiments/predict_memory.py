"""Peak host memory of `python -m segjax.predict` on large images: it stays bounded.

    python experiments/predict_memory.py --sizes 4000,8000
    python experiments/predict_memory.py --sizes 4000,8000 --checkout /path/to/other/segjax

Builds a run directory with a small random valid-convolution U-Net (width 4, depth 2,
572x572 overlap tiles, 2 classes), writes one square grayscale PNG per size, and runs
`python -m segjax.predict` on each in a fresh process (from `--checkout`, default this
repository), reporting the process's peak resident memory (ru_maxrss) and bytes per
pixel. Prints a Markdown table and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent

MEASURE = """
import resource, sys, time
from segjax import predict
start = time.perf_counter()
predict.main(["--checkpoint", {checkpoint!r}, "--input", {image!r}, "--output", {output!r},
              "--no_progress"])
print("RESULT", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      time.perf_counter() - start)
"""


def make_run(directory: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    from segjax import checkpoints
    from segjax.config import base_config
    from segjax.models import registry
    from segjax.train import state as state_lib

    config = base_config()
    config.model.name = "unet"
    config.model.padding, config.model.norm = "valid", None
    config.model.width, config.model.depth, config.model.num_classes = 4, 2, 2
    config.data.image_channels = 1
    config.eval.tile, config.eval.batch_size = (572, 572), 2
    run = directory / "run"
    run.mkdir(parents=True)
    (run / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort())
    model = registry.build(config.model)
    variables = state_lib.init_variables(model, state_lib.init_key(0), (1, 572, 572, 1))
    checkpoints.save_variables(run / checkpoints.BEST_DIR / checkpoints.BEST_FILE, variables,
                               {"model": config.model.to_dict()})
    return run / checkpoints.BEST_DIR / checkpoints.BEST_FILE


def make_image(path: Path, size: int) -> None:
    from PIL import Image
    rng = np.random.default_rng(size)
    Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8)).save(path)


def measure(checkout: Path, checkpoint: Path, image: Path, output: Path) -> tuple[float, float]:
    code = MEASURE.format(checkpoint=str(checkpoint), image=str(image), output=str(output))
    result = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True,
                            text=True, env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"})
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"predict failed in {checkout}:\n{result.stderr[-3000:]}")
    _, megabytes, seconds = line.split()
    return float(megabytes), float(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4000,8000")
    parser.add_argument("--checkout", default=str(REPO_ROOT),
                        help="the segjax checkout whose predict is measured")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = make_run(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            image = tmp / f"image{size}.png"
            make_image(image, size)
            megabytes, seconds = measure(Path(args.checkout), checkpoint, image, tmp / "out")
            rows.append((size, megabytes, megabytes * 2**20 / size**2, seconds))
            image.unlink()
    print(f"`python {shlex.join(sys.argv)}`\n")
    print("| image | peak RSS (MB) | bytes per pixel | seconds |\n| --- | ---: | ---: | ---: |")
    for size, megabytes, per_pixel, seconds in rows:
        print(f"| {size}x{size} | {megabytes:.0f} | {per_pixel:.1f} | {seconds:.1f} |")
    print(json.dumps([dict(size=r[0], peak_mb=r[1], bytes_per_pixel=r[2], seconds=r[3])
                      for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
