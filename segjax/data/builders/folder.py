"""What segjax's tfds builders share: the record features and reading a local folder.

A record is {'image': encoded image bytes, 'label': encoded label bytes (b''
for an unlabelled split), 'name': file name}. Encoded bytes, rather than
`tfds.features.Image`, because writing Image features needs TensorFlow, which
segjax does not require; `segjax.data.sources.TfdsSource` decodes them with
pillow. The local layout is the one `FolderSource` reads:
`<dir>/<split>/images/*` and `<dir>/<split>/labels/*` (same stems).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from segjax.data.sources import IMAGE_SUFFIXES, sort_names


def record_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "label": tfds.features.Tensor(shape=(), dtype=np.object_),
        "name": tfds.features.Text(),
    })


def local_split_dir(dl_manager, split: str) -> Path | None:
    """`<manual_dir>/<split>` when the manual (local) directory holds that split, else None."""
    try:
        manual = Path(dl_manager.manual_dir)
    except AssertionError:  # tfds: no manual directory, or an empty one
        return None
    folder = manual / split
    return folder if (folder / "images").is_dir() else None


def folder_examples(image_dir: Path, label_dir: Path | None) -> Iterator[tuple[int, dict]]:
    """(key, record) for every image in image_dir (sorted as FolderSource sorts), with the
    label of the same stem from label_dir; file bytes are stored unchanged."""
    images = {p.name: p for p in Path(image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {}
    if label_dir is not None:
        labels = {p.stem: p for p in Path(label_dir).iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES}
    for key, name in enumerate(sort_names(list(images))):
        path = images[name]
        label = b""
        if label_dir is not None:
            if path.stem not in labels:
                raise FileNotFoundError(f"image {path} has no label in {label_dir}")
            label = labels[path.stem].read_bytes()
        yield key, {"image": path.read_bytes(), "label": label, "name": name}
