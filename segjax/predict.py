"""Predict a folder (or glob) of images with a trained model.

    python -m segjax.predict --workdir runs/deeplab_camvid --input 'photos/*.png' --output out/
    python -m segjax.predict --checkpoint runs/x/checkpoints_best/variables \\
        --input photos/ --output out/ --flip --scales 0.75,1,1.25 --crf --probabilities

Writes, per input image `<stem>`:
  out/labels/<stem>.png          class indices as a palette PNG (the dataset's class colours)
  out/overlays/<stem>.png        the class colours blended over the input
  out/probabilities/<stem>.npy   float16 (H, W, K) probabilities, with --probabilities

Test-time options (sliding window, scales, flip, CRF) default to the run's
`config.eval` and are overridden by the flags. An unreadable image or one whose
channel count differs from the model's (`config.data.image_channels`) stops
the run with an error naming the file.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from segjax import inference

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".ppm", ".pgm")


# ----------------------------------------------------------------------------- model and config


def load_model(workdir: str | None = None, checkpoint: str | None = None):
    """(predict_fn, config) from a run directory or a checkpoint (directory or variables file)."""
    from segjax import weights  # pylint: disable=import-outside-toplevel
    if bool(workdir) == bool(checkpoint):
        raise ValueError("give exactly one of --workdir or --checkpoint")
    model, variables, config = weights.restore_for_inference(workdir or checkpoint)
    if "data" not in config:
        raise ValueError(f"{workdir or checkpoint}: no config.json with a data section was found "
                         "next to the checkpoint; the image normalisation and channel count "
                         "come from it")
    return inference.make_predict_fn(model, variables), config


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """--workdir RUN or --checkpoint PATH: where the model comes from (exactly one)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a training run directory (its latest checkpoint)")
    source.add_argument("--checkpoint", help="a checkpoint directory or a variables checkpoint")


def comma_ints(text: str) -> tuple[int, ...]:
    """'512,512' -> (512, 512); '' -> ()."""
    return tuple(int(v) for v in text.split(",") if v)


def comma_floats(text: str) -> tuple[float, ...]:
    """'0.5,1,1.5' -> (0.5, 1.0, 1.5); '' -> ()."""
    return tuple(float(v) for v in text.split(",") if v)


def add_eval_flags(parser: argparse.ArgumentParser) -> None:
    """Flags overriding config.eval (unset flags keep the run's values)."""
    parser.add_argument("--tile", type=comma_ints,
                        help="sliding-window tile, e.g. 512,512 ('' = whole)")
    parser.add_argument("--overlap", type=float, help="overlap fraction of the output tile")
    parser.add_argument("--blend", choices=inference.BLENDS)
    parser.add_argument("--scales", type=comma_floats, help="e.g. 0.5,0.75,1,1.25,1.5,1.75")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--crf", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--batch_size", type=int, help="tiles per device call")
    parser.add_argument("--crf_params", type=_key_values,
                        help="CRF overrides, e.g. bi_w=5,bi_xy_std=50,iterations=5")


def _key_values(text: str) -> dict:
    """'a=1,b=x' -> {'a': 1.0, 'b': 'x'} (numbers as float, 'iterations' as int)."""
    result = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--crf_params: expected key=value, got {item!r}")
        try:
            result[key] = int(value) if key == "iterations" else float(value)
        except ValueError:
            result[key] = value
    return result


def eval_options(config, args: argparse.Namespace) -> inference.EvalOptions:
    eval_config = config.get("eval")
    crf_params = None
    if args.crf_params:
        base = eval_config.get("crf_params", {}) if eval_config is not None else {}
        crf_params = {**(base.to_dict() if hasattr(base, "to_dict") else dict(base)),
                      **args.crf_params}
    return inference.EvalOptions.from_config(
        eval_config, tile=args.tile, overlap=args.overlap, blend=args.blend,
        scales=args.scales, flip=args.flip, crf=args.crf, batch_size=args.batch_size,
        crf_params=crf_params)


# ----------------------------------------------------------------------------- colours


def class_colours(config) -> np.ndarray:
    """(K, 3) uint8 colours: the dataset's classes.txt ("value name R G B") or a fixed palette."""
    num_classes = int(config.model.num_classes)
    data = config.data
    raw_values = tuple(int(v) for v in data.get("label_values", ())) or tuple(range(num_classes))
    table = Path(str(data.get("root", ""))) / "classes.txt"
    colours = {}
    if table.is_file():
        for line in table.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 5 and not line.lstrip().startswith("#"):
                try:
                    colours[int(fields[0])] = [int(v) for v in fields[-3:]]
                except ValueError:
                    continue
    if all(value in colours for value in raw_values):
        return np.array([colours[value] for value in raw_values], np.uint8)
    from segjax.train.loop import palette  # pylint: disable=import-outside-toplevel
    return palette(num_classes)


# ----------------------------------------------------------------------------- images


def resolve_inputs(spec: str) -> list[Path]:
    """The image files of a directory, or the files matching a glob, sorted."""
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not files:
        raise FileNotFoundError(f"--input {spec!r}: no image files found (a directory of "
                                f"{', '.join(IMAGE_SUFFIXES)} files, a file or a glob)")
    return sorted(files)


def read_image(path: Path, channels: int) -> np.ndarray:
    """uint8 (H, W, C); ValueError naming the file if unreadable or of the wrong channel count."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                image = image.convert("RGB")
            array = np.asarray(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] != channels:
        raise ValueError(f"{path}: image has {array.shape[-1]} channel(s), the model expects "
                         f"{channels} (config.data.image_channels)")
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit image, got {array.dtype}")
    return array


def overlay(image: np.ndarray, prediction: np.ndarray, colours: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
    """uint8 RGB: (1 - alpha) * image + alpha * class colour."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colours[prediction].astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def label_png(prediction: np.ndarray, colours: np.ndarray) -> Image.Image:
    """A palette PNG whose pixel values are the class indices."""
    image = Image.fromarray(prediction.astype(np.uint8), mode="P")
    image.putpalette(colours.reshape(-1).tolist())
    return image


# ----------------------------------------------------------------------------- command


def predict_folder(predict_fn, config, inputs: Sequence[Path], output: Path,
                   options: inference.EvalOptions, *, probabilities: bool = False,
                   alpha: float = 0.5, progress: bool = True) -> list[Path]:
    """Predicts every input; returns the label PNG paths written."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    num_classes = int(config.model.num_classes)
    if num_classes > 256:
        raise ValueError(f"label PNGs hold at most 256 classes; the model has {num_classes}")
    channels = int(config.data.image_channels)
    colours = class_colours(config)
    stems = [path.stem for path in inputs]
    if len(set(stems)) != len(stems):
        duplicate = next(stem for stem in stems if stems.count(stem) > 1)
        raise ValueError(f"two inputs share the name {duplicate!r}; outputs are named by stem")
    folders = ["labels", "overlays"] + (["probabilities"] if probabilities else [])
    for folder in folders:
        (output / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(inputs, desc="predict", unit="image", disable=not progress):
        image = read_image(path, channels)
        probs = inference.predict_image(predict_fn, image, config.data, options, num_classes)
        prediction = np.argmax(probs, axis=-1)
        label_path = output / "labels" / f"{path.stem}.png"
        label_png(prediction, colours).save(label_path)
        Image.fromarray(overlay(image, prediction, colours, alpha)).save(
            output / "overlays" / f"{path.stem}.png")
        if probabilities:
            np.save(output / "probabilities" / f"{path.stem}.npy", probs.astype(np.float16))
        written.append(label_path)
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m segjax.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_flags(parser)
    parser.add_argument("--input", required=True, help="a directory, an image file or a glob")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write per-class probabilities (.npy, float16)")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    parser.add_argument("--no_progress", action="store_true")
    add_eval_flags(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = resolve_inputs(args.input)
    predict_fn, config = load_model(args.workdir, args.checkpoint)
    written = predict_folder(predict_fn, config, inputs, Path(args.output),
                             eval_options(config, args), probabilities=args.probabilities,
                             alpha=args.alpha, progress=not args.no_progress)
    print(f"wrote {len(written)} label maps and overlays to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
