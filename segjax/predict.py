"""Predict a folder (or glob) of images, or of volumes, with a trained model.

    python -m segjax.predict --workdir runs/deeplab_camvid --input 'photos/*.png' --output out/
    python -m segjax.predict --checkpoint runs/x/checkpoints_best/variables \\
        --input photos/ --output out/ --probabilities --config.eval.flip=True \\
        --config.eval.scales='(0.75, 1.0, 1.25)' --config.eval.crf=True
    python -m segjax.predict --model deeplab.onnx --input photos/ --output out/

Writes, per input image `<stem>`:
  out/labels/<stem>.png          class indices as a palette PNG (the dataset's class colours)
  out/overlays/<stem>.png        the class colours blended over the input
  out/probabilities/<stem>.npy   float16 (H, W, K) probabilities, with --probabilities
for a sigmoid head (config.model.head_activation = 'sigmoid': multi-label or binary models),
one mask per class instead of the label map, thresholded at config.eval.thresholds
(or --config.eval.thresholds=...):
  out/masks/<class>/<stem>.png   0/255 mask of each class (config.data.class_names, else
                                 class_<k>)
and for panoptic models (outputs "center" and "offset", config.data.panoptic.thing_classes;
Panoptic-DeepLab's post-processing with the run's config.eval.panoptic, whole image):
  out/panoptic/<stem>.png        instance colours over the class colours, void black
  out/panoptic_ids/<stem>.png    panoptic ids class * label_divisor + instance (void:
                                 ignore_index * label_divisor) as RGB: id = R + 256 G + 256^2 B

A volumetric run (its config.data.crop has three axes, e.g. `nonewnet`) reads
volumes instead (`.nii.gz`, `.nii`, multi-page `.tif`/`.tiff`, `.npy`; see
`segjax.data.volume_files`), predicts each whole by a sliding window, and writes:
  out/labels/<stem>.nii.gz       class indices (uint8) on the input's voxel grid: the input
                                 NIfTI's affine (identity for TIFF stacks and .npy);
                                 sigmoid heads: out/masks/<class>/<stem>.nii.gz (0/1)
  out/overlays/<stem>.png        the class colours over the volume's middle section
  out/probabilities/<stem>.npy   float16 (D, H, W, K) probabilities, with --probabilities

The model and its weights come from `segjax.checkpoints.load`, the predict
function from `segjax.evaluation` (the same path as the train loop's
validation and `segjax.evaluate`). With `--model` instead, an exported model
(`python -m segjax.export`: .onnx, .tflite, a SavedModel directory or
.jaxexport) runs the same sliding window and test-time augmentation through
its runtime (onnxruntime, the LiteRT interpreter, TensorFlow; `segjax.deployed`);
its config is the one the export stored, config.eval.tile and batch_size
become the exported fixed input shape (a note says so), and a panoptic model
gives its semantic labels only (its instance heads are not exported). The config is the run's own (or
--config's), with `--config.<key>=value` overrides as for training
(`segjax.cli`); test-time options (sliding window, scales, flip, CRF) are its
`config.eval` (`segjax.config.EvalOptions`). An unreadable image (or volume),
or one whose channel count differs from the model's
(`config.data.image_channels`), is skipped with a warning naming it; the
others are predicted, and the command then exits 1 listing the skipped files. Outputs of these inputs that --output
already holds are not replaced without `--overwrite` (the run stops before
predicting anything).
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import flags
from PIL import Image

from segjax import checkpoints, cli, deployed, evaluation, inference, runtime, visualize
from segjax.config import EvalOptions
from segjax.data import volume_files, volume_sources
from segjax.paths import check_writable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".ppm", ".pgm")


# ----------------------------------------------------------------------------- images


def resolve_inputs(spec: str, *, volumetric: bool = False) -> list[Path]:
    """The image (or volume) files of a directory, or the files matching a glob, sorted."""
    suffixes = volume_files.VOLUME_SUFFIXES if volumetric else IMAGE_SUFFIXES
    kind = "volume" if volumetric else "image"
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir()
                 if p.is_file() and not p.name.startswith(".")
                 and p.name.lower().endswith(suffixes)]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not files:
        raise FileNotFoundError(f"--input {spec!r}: no {kind} files found (a directory of "
                                f"{', '.join(suffixes)} files, a file or a glob)")
    return sorted(files)


def is_volumetric(config) -> bool:
    """True for a run trained on volume patches (config.data.crop with three axes)."""
    return len(tuple(config.data.get("crop", ()) or ())) == 3


def output_stems(inputs: Sequence[Path], volumetric: bool) -> list[str]:
    """Output names: file stems ('x.nii.gz' -> 'x'); two inputs of one stem are an error."""
    stems = [volume_files.volume_stem(p) if volumetric else p.stem for p in inputs]
    if len(set(stems)) != len(stems):
        duplicate = next(stem for stem in stems if stems.count(stem) > 1)
        raise ValueError(f"two inputs share the name {duplicate!r}; outputs are named by stem")
    return stems


def existing_outputs(output: Path, stems: Sequence[str]) -> list[Path]:
    """The files in `output`'s folders named after one of `stems` (`<stem>.png`, `.npy`,
    `.nii.gz`): what predicting these inputs would overwrite. Files directly in `output`
    (the inputs themselves, when --input is --output) are never written."""
    if not output.is_dir():
        return []
    wanted = set(stems)
    return sorted(p for p in output.rglob("*") if p.is_file() and p.parent != output
                  and volume_files.volume_stem(p) in wanted)


def check_output(output: Path, stems: Sequence[str], overwrite: bool) -> None:
    """UsageError when outputs of these inputs exist in `output` and `overwrite` is off."""
    existing = [] if overwrite else existing_outputs(output, stems)
    if existing:
        raise cli.UsageError(f"--output {output} already holds {len(existing)} output file(s) "
                             f"of these inputs (e.g. {existing[0]}); pass --overwrite to "
                             "replace them, or choose another --output")


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


# ----------------------------------------------------------------------------- command


def mask_folders(config) -> list[str]:
    """One output folder name per class of a sigmoid head (its class name, made path-safe)."""
    num_classes = int(config.model.num_classes)
    names = list(config.data.get("class_names", ()) or [])
    if len(names) != num_classes:
        names = [f"class_{k}" for k in range(num_classes)]
    folders = ["".join(c if c.isalnum() or c in "-_." else "_" for c in str(n)) or f"class_{k}"
               for k, n in enumerate(names)]
    if len(set(folders)) != len(folders):
        folders = [f"{k}_{folder}" for k, folder in enumerate(folders)]
    return folders


def write_panoptic(panoptic_fn, config, image: np.ndarray, stem: str, output: Path,
                   colours: np.ndarray) -> None:
    """The panoptic colour and id PNGs of one image (see the module docstring)."""
    maps = evaluation.panoptic_maps(panoptic_fn, image, config.data)
    void = int(config.data.ignore_index)
    Image.fromarray(visualize.panoptic_colours(maps["panoptic_class"], maps["panoptic_instance"],
                                               colours, void_label=void)).save(
        output / "panoptic" / f"{stem}.png")
    visualize.id_png(maps["panoptic"]).save(output / "panoptic_ids" / f"{stem}.png")


Skipped = list[tuple[Path, str]]  # (input, why it could not be read)


class SkippedInputs(ValueError):
    """Some inputs could not be read; the others were predicted. The message lists them."""


def _read_or_skip(read, path: Path, skipped: Skipped | None):
    """`read()`, or None with `(path, reason)` added to `skipped` (when given) and a warning
    line if the file cannot be read: one bad file does not stop a folder."""
    if skipped is None:
        return read()
    try:
        return read()
    except ValueError as error:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
        skipped.append((path, str(error)))
        tqdm.write(f"warning: skipped {path}: {error}", file=sys.stderr)
        return None


def skipped_error(skipped: Skipped, total: int) -> SkippedInputs:
    """The error naming every skipped input (the first 10 with their reasons)."""
    listed = "; ".join(reason if str(path) in reason else f"{path}: {reason}"
                       for path, reason in skipped[:10])
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return SkippedInputs(f"{len(skipped)} of {total} inputs skipped, unreadable: {listed}{more}")


def predict_folder(predict_fn, config, inputs: Sequence[Path], output: Path,
                   options: EvalOptions, *, probabilities: bool = False,
                   alpha: float = 0.5, progress: bool = True,
                   panoptic_fn=None, skipped: Skipped | None = None) -> list[Path]:
    """Predicts every input; returns the label PNG paths written (a sigmoid head's: every
    class mask). With `panoptic_fn`
    (`segjax.evaluation.make_panoptic_fn`) also the panoptic PNGs. An unreadable input
    raises, or with a `skipped` list is added to it (path, reason) and skipped."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    num_classes = int(config.model.num_classes)
    if num_classes > 256:
        raise ValueError(f"label PNGs hold at most 256 classes; the model has {num_classes}")
    channels = int(config.data.image_channels)
    colours = visualize.class_colours(config)
    output_stems(inputs, volumetric=False)
    masks = mask_folders(config) if options.activation == "sigmoid" else None
    _output_folders(output, probabilities, panoptic=panoptic_fn is not None, masks=masks)
    written = []
    for path in tqdm(inputs, desc="predict", unit="image", disable=not progress):
        image = _read_or_skip(lambda: read_image(path, channels), path, skipped)
        if image is None:
            continue
        prediction, probs = inference.predict_labels(predict_fn, image, config.data, options,
                                                      num_classes, probabilities=probabilities)
        if masks is not None:
            for folder, mask in zip(masks, np.moveaxis(prediction, -1, 0)):
                label_path = output / "masks" / folder / f"{path.stem}.png"
                visualize.mask_png(mask).save(label_path)
                written.append(label_path)
        else:
            label_path = output / "labels" / f"{path.stem}.png"
            visualize.label_png(prediction, colours).save(label_path)
        Image.fromarray(visualize.overlay(image, prediction, colours, alpha)).save(
            output / "overlays" / f"{path.stem}.png")
        if probabilities:
            np.save(output / "probabilities" / f"{path.stem}.npy", probs)
        if panoptic_fn is not None:
            write_panoptic(panoptic_fn, config, image, path.stem, output, colours)
        if masks is None:
            written.append(label_path)
    return written


def _output_folders(output: Path, probabilities: bool, panoptic: bool = False,
                    masks: Sequence[str] | None = None) -> None:
    label_folders = ([f"masks/{folder}" for folder in masks] if masks is not None
                     else ["labels"])
    folders = (label_folders + ["overlays"] + (["probabilities"] if probabilities else [])
               + (["panoptic", "panoptic_ids"] if panoptic else []))
    for folder in folders:
        (output / folder).mkdir(parents=True, exist_ok=True)


def _read_volume(path: Path, channels: int):
    """(volume, its image array); ValueError naming the file if unreadable."""
    volume = volume_files.read_volume(path)
    return volume, volume_sources.image_array(volume.data, channels, str(path))


def predict_volumes(predict_fn, config, inputs: Sequence[Path], output: Path,
                    options: EvalOptions, *, probabilities: bool = False,
                    alpha: float = 0.5, progress: bool = True,
                    skipped: Skipped | None = None) -> list[Path]:
    """Predicts every input volume whole; returns the NIfTI label paths written. An
    unreadable volume raises, or with a `skipped` list is added to it and skipped."""
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    num_classes = int(config.model.num_classes)
    if num_classes > 256:
        raise ValueError(f"uint8 label volumes hold at most 256 classes; the model has "
                         f"{num_classes}")
    channels = int(config.data.image_channels)
    colours = visualize.class_colours(config)
    stems = output_stems(inputs, volumetric=True)
    masks = mask_folders(config) if options.activation == "sigmoid" else None
    _output_folders(output, probabilities, masks=masks)
    written = []
    for path, stem in tqdm(list(zip(inputs, stems)), desc="predict", unit="volume",
                           disable=not progress):
        read = _read_or_skip(lambda: _read_volume(path, channels), path, skipped)
        if read is None:
            continue
        volume, image = read
        probs = inference.predict_image(predict_fn, image, config.data, options, num_classes)
        if masks is not None:
            prediction = (probs > options.class_thresholds(num_classes)).astype(np.uint8)
            for folder, mask in zip(masks, np.moveaxis(prediction, -1, 0)):
                label_path = volume_files.write_nifti(output / "masks" / folder / f"{stem}.nii.gz",
                                                      mask, volume.affine)
                written.append(label_path)
        else:
            prediction = np.argmax(probs, axis=-1).astype(np.uint8)
            label_path = volume_files.write_nifti(output / "labels" / f"{stem}.nii.gz",
                                                  prediction, volume.affine)
        section, section_prediction, _ = visualize.middle_section(image, prediction)
        Image.fromarray(visualize.overlay(section, section_prediction, colours, alpha)).save(
            output / "overlays" / f"{stem}.png")
        if probabilities:
            np.save(output / "probabilities" / f"{stem}.npy", probs.astype(np.float16))
        if masks is None:
            written.append(label_path)
    return written


def check_model_source(values: flags.FlagValues) -> None:
    if values.model and (values.workdir or values.checkpoint):
        raise cli.UsageError("give --model or one of --workdir / --checkpoint, not both")


def exported_model_config(values: flags.FlagValues):
    """The config --model's export stored, else the run's (--workdir / --checkpoint)."""
    if not values.model:
        return cli.run_config(values)
    check_model_source(values)
    if not Path(values.model).exists():
        raise FileNotFoundError(f"--model: no exported model at {values.model}")
    return deployed.stored_config(values.model)


def exported_predict_fn(path: str, config):
    """(predict_fn, config) of an exported model: config.eval's tile and batch size set to its
    fixed input shape (each change printed as a note)."""
    loaded = deployed.load(path)
    config, notes = deployed.inference_config(config, loaded.metadata)
    for note in notes:
        print(f"note: {note}")
    return loaded.predict_fn, config


def define_flags(values: flags.FlagValues) -> None:
    cli.define_checkpoint_flags(values)
    flags.DEFINE_string("model", None, "An exported model (segjax.export: .onnx, .tflite, a "
                        "SavedModel directory, .jaxexport) to run instead of --workdir / "
                        "--checkpoint.", flag_values=values)
    flags.DEFINE_string("input", None, "A directory, an image (volume) file or a glob.",
                        flag_values=values)
    flags.DEFINE_string("output", None, "The output directory.", flag_values=values)
    flags.DEFINE_bool("probabilities", False, "Also write per-class probabilities (.npy, "
                      "float16).", flag_values=values)
    flags.DEFINE_float("alpha", 0.5, "Overlay opacity (0 to 1).", lower_bound=0.0,
                       upper_bound=1.0, flag_values=values)
    flags.DEFINE_bool("overwrite", False, "Replace outputs of these inputs that --output "
                      "already holds (refused without it).", flag_values=values)
    flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
    values, config = cli.parse(argv, define_flags, doc=__doc__, program="python -m segjax.predict",
                               default_config=exported_model_config)
    if not values.input or not values.output:
        raise cli.UsageError("--input and --output are required")
    check_model_source(values)
    volumetric = is_volumetric(config)
    inputs = resolve_inputs(values.input, volumetric=volumetric)
    output, progress = Path(values.output), not values.no_progress
    check_output(output, output_stems(inputs, volumetric), values.overwrite)
    check_writable(output, holds="the predictions", instead="another --output")
    runtime.configure(config)
    if values.model:
        predict_fn, config = exported_predict_fn(values.model, config)
        panoptic_fn = None
    else:
        checkpoint = checkpoints.load(cli.checkpoint_path(values), config)
        predict_fn, panoptic_fn = evaluation.predict_functions(checkpoint.model,
                                                               checkpoint.variables, config)
    options = EvalOptions.from_config(config)
    skipped: Skipped = []
    if volumetric:
        written = predict_volumes(predict_fn, config, inputs, output, options,
                                  probabilities=values.probabilities, alpha=values.alpha,
                                  progress=progress, skipped=skipped)
    else:
        written = predict_folder(predict_fn, config, inputs, output, options,
                                 probabilities=values.probabilities, alpha=values.alpha,
                                 progress=progress, panoptic_fn=panoptic_fn, skipped=skipped)
    kind = ("class mask files" if options.activation == "sigmoid"
            else "label volumes" if volumetric else "label maps")
    print(f"wrote {len(written)} {kind} and overlays of {len(inputs) - len(skipped)} inputs "
          f"to {output}")
    if skipped:
        raise skipped_error(skipped, len(inputs))
    return 0


if __name__ == "__main__":
    cli.run(main)
