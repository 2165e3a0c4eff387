"""Training logs: TensorBoard event files, a JSON-lines metrics file, a progress bar.

`MetricWriter(workdir)` writes every scalar twice: to TensorBoard event files
under `workdir/tensorboard` (through tensorboardX, so TensorFlow is not a
dependency; `clu.metric_writers` would need it) and as one JSON line
`{"step": ..., **scalars}` appended to `workdir/metrics.jsonl`, flushed at
every write so a killed run keeps what it logged. Non-finite values become
`null` in JSON (strict JSON has no NaN). `read_metrics` reads the lines back;
`read_tensorboard_scalars` reads the event files back without TensorFlow or
the tensorboard package (a TFRecord reader over tensorboardX's protobufs).
A writer created with `resume_step` first drops the records of later steps,
which the resumed run replays (`drop_records_after`).

On multi-host runs create the writer with `enabled=jax.process_index() == 0`
so only one process writes.

A workdir in a bucket (gs://..., `segjax.paths`): an object cannot be
appended to, so the writer keeps metrics.jsonl's text and rewrites the whole
object at every write (one put each: a reader sees the file before or after
a record, never half of one; the file is small, a line per log step).
tensorboardX writes local files only (its gs:// support needs TensorFlow), so
the event files go to a local temporary folder and each is copied up whole
to `workdir/tensorboard/` at every flush (what tensorboardX's writer thread
has written by then) and at close; a killed run loses the events its last
copy did not hold. Each event file name gets a random suffix, so a resumed
run's file never replaces an earlier one.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import tqdm
from tensorboardX import SummaryWriter
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2

from segjax import paths

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _to_float(name: str, value: Any) -> float:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"write_scalars: {name!r} must be a number, got {type(value).__name__} "
                        f"of shape {array.shape}")
    return float(array.reshape(()))


def _json_value(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _check_image(name: str, image: Any) -> tuple[np.ndarray, str]:
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3
                                                           and image.shape[-1] in (1, 3))):
        raise ValueError(f"write_images: {name!r} must be a uint8 HxWx3 (or HxW) array, got "
                         f"{image.dtype} of shape {image.shape}")
    return image, "HW" if image.ndim == 2 else "HWC"


class MetricWriter:
    """Scalars to TensorBoard and metrics.jsonl (plus a console line); images and text to TB."""

    def __init__(self, workdir: str | Path, *, console: bool = True, enabled: bool = True,
                 resume_step: int | None = None):
        self.workdir = paths.as_path(workdir)
        self.console = console
        self.enabled = enabled
        self._tensorboard = None
        self._jsonl = None
        self._staging = None  # a bucket workdir's local TensorBoard folder
        self._uploaded: dict[Path, int] = {}  # its event files' sizes when last copied up
        if enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if resume_step is not None:
                drop_records_after(self.workdir / METRICS_FILE, resume_step)
            logdir, suffix = self.workdir / TENSORBOARD_DIR, ""
            if not paths.is_local(self.workdir):
                self._staging = Path(tempfile.mkdtemp(prefix="segjax-tensorboard-"))
                # Uploaded under the local file's name: unique, so no earlier file is replaced.
                logdir, suffix = self._staging, f".{uuid.uuid4().hex[:8]}"
            self._tensorboard = SummaryWriter(logdir=str(logdir), filename_suffix=suffix)
            self._jsonl = (open(self.workdir / METRICS_FILE, "a", encoding="utf-8")
                           if paths.is_local(self.workdir)
                           else _RewrittenObject(self.workdir / METRICS_FILE))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        step = int(step)
        values = {name: _to_float(name, value) for name, value in scalars.items()}
        for name, value in values.items():
            self._tensorboard.add_scalar(name, value, step)
        self._flush_tensorboard()
        record = {"step": step, **{name: _json_value(v) for name, v in values.items()}}
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        self._jsonl.flush()
        if self.console:
            text = " ".join(f"{name}={value:.5g}" for name, value in values.items())
            print(f"step {step}: {text}", flush=True)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """uint8 HxWx3 (or HxW grayscale) arrays, one per tag."""
        if not self.enabled:
            return
        for name, image in images.items():
            array, dataformats = _check_image(name, image)
            self._tensorboard.add_image(name, array, int(step), dataformats=dataformats)
        self._flush_tensorboard()

    def write_text(self, step: int, texts: Mapping[str, str]) -> None:
        """Markdown text (e.g. a per-class metrics table), one per tag."""
        if not self.enabled:
            return
        for name, text in texts.items():
            self._tensorboard.add_text(name, str(text), int(step))
        self._flush_tensorboard()

    def _flush_tensorboard(self) -> None:
        self._tensorboard.flush()
        self._upload_events()

    def _upload_events(self) -> None:
        """A bucket workdir: copies each local event file up whole (objects are not appended)."""
        if self._staging is None:
            return
        for local in sorted(self._staging.rglob("events.out.tfevents.*")):
            data = local.read_bytes()
            if self._uploaded.get(local) == len(data):
                continue  # nothing written since the last copy
            target = self.workdir / TENSORBOARD_DIR / local.relative_to(self._staging).as_posix()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self._uploaded[local] = len(data)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
            self._upload_events()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _RewrittenObject:
    """An append-only text object in a bucket: the text is kept and the object rewritten
    whole at each flush (an object store has no append)."""

    def __init__(self, path):
        self.path = path
        self._text = path.read_text(encoding="utf-8") if path.exists() else ""
        self._written = self._text

    def write(self, text: str) -> None:
        self._text += text

    def flush(self) -> None:
        if self._text != self._written:
            paths.write_text(self.path, self._text)
            self._written = self._text

    def close(self) -> None:
        self.flush()


def drop_records_after(path, step: int) -> int:
    """Removes the records of steps > `step` from a metrics.jsonl; returns how many.

    A run resumed from the checkpoint of `step` replays the steps after it, so
    their records (logged before the stop) are replaced, not repeated. The
    file is rewritten atomically; a truncated last line is dropped too.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if int(record.get("step", 0)) > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        paths.write_text(path, "".join(line + "\n" for line in kept))
    return dropped


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (or of `<workdir>/metrics.jsonl`), nulls as NaN.

    A truncated last line (a run killed mid-write) is skipped; a bad line
    elsewhere is an error naming the file and line.
    """
    path = paths.as_path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON metrics record ({error})") from error
        records.append({k: float("nan") if v is None else v for k, v in record.items()})
    return records


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_records(path):
    """The payloads of a TFRecord file, checking both CRCs."""
    with path.open("rb") as stream:
        while header := stream.read(12):
            if len(header) < 12:
                return  # a record cut short by a killed writer
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc(header[:8]) != length_crc:
                raise ValueError(f"{path}: corrupt record length")
            data = stream.read(length)
            footer = stream.read(4)
            if len(data) < length or len(footer) < 4:
                return
            if _masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{path}: corrupt record data")
            yield data


def _event_files(logdir) -> list:
    if paths.is_local(logdir):
        return sorted(logdir.rglob("events.out.tfevents.*"))
    if not logdir.is_dir():
        return []
    return sorted((path for path in paths.files_under(logdir)
                   if path.name.startswith("events.out.tfevents.")), key=str)


def read_tensorboard_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file under `logdir` (a local folder or
    a bucket's), in file order."""
    logdir = paths.as_path(logdir)
    files = _event_files(logdir)
    if not files:
        raise FileNotFoundError(f"read_tensorboard_scalars: no event files under {logdir}")
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in files:
        for record in _read_records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


class ProgressBar:
    """A tqdm bar over training steps showing the loss, steps/s and s/step.

    The rate is measured between consecutive `update` calls, so it reflects
    the current speed rather than an average that includes compilation.
    """

    def __init__(self, total_steps: int, initial_step: int = 0, enabled: bool = True, *,
                 file: TextIO | None = None):
        self.enabled = enabled
        self._step = int(initial_step)
        self._time = time.perf_counter()
        self._bar = tqdm.tqdm(
            total=int(total_steps), initial=int(initial_step), disable=not enabled,
            unit="step", dynamic_ncols=True, file=file if file is not None else sys.stderr,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def set_total(self, total_steps: int) -> None:
        """A new step count (a time-budgeted run's plan, segjax.train.budget)."""
        self._bar.total = int(total_steps)
        self._bar.refresh()

    def update(self, step: int, loss: Any = None) -> None:
        """Moves the bar to `step` (absolute) and shows `loss` and the rate since the last call."""
        if not self.enabled:
            return
        step = int(step)
        now = time.perf_counter()
        steps, seconds = step - self._step, now - self._time
        parts = []
        if loss is not None:
            parts.append(f"loss={float(np.asarray(loss)):.4f}")
        if steps > 0 and seconds > 0:
            parts.append(f"{steps / seconds:.2f} step/s {seconds / steps:.3f} s/step")
        self._bar.set_postfix_str(" ".join(parts), refresh=False)
        self._bar.update(steps)
        self._step, self._time = step, now

    def close(self) -> None:
        self._bar.close()
