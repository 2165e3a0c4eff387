"""A new data source in its own file: a folder of `.npz` examples.

    <data.root>/<split>/*.npz      each holding 'image' (H, W, C) uint8 and 'label' (H, W) ints

Registered as `data.source = "npz"` once this module is in `config.imports`.
Files are taken in natural name order; a split may slice them
(`train[:10]`) as every source does. Labels are raw values mapped by
`data.label_values` / `data.ignore_values` like the folder source's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segjax.data.sources import parse_split, sort_names, spec_from_config
from segjax.registry import register


class NpzSource:
    def __init__(self, root: str, split: str, spec):
        folder, selection = parse_split(split)
        directory = Path(root) / folder
        if not directory.is_dir():
            raise FileNotFoundError(f"data.root: no split folder {directory} for split "
                                    f"{split!r} (expected <root>/<split>/*.npz)")
        names = sort_names([p.name for p in directory.glob("*.npz")])
        self.paths = [directory / name for name in names][selection]
        if not self.paths:
            raise FileNotFoundError(f"split {split!r} selects no .npz file in {directory}")
        self.spec = spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        with np.load(path) as arrays:
            if "image" not in arrays or "label" not in arrays:
                raise ValueError(f"{path}: expected arrays 'image' and 'label', found "
                                 f"{sorted(arrays.files)}")
            image, raw = np.asarray(arrays["image"]), np.asarray(arrays["label"])
        if image.ndim == 2:
            image = image[..., None]
        if image.dtype != np.uint8 or image.shape[-1] != self.spec.image_channels:
            raise ValueError(f"{path}: image {image.shape} {image.dtype}, expected uint8 with "
                             f"data.image_channels={self.spec.image_channels}")
        if raw.shape != image.shape[:2]:
            raise ValueError(f"{path}: label {raw.shape} does not match image {image.shape[:2]}")
        return {"image": image, "label": self.spec.map_label(raw, str(path)), "name": path.name}


@register("source", "npz")
def npz_source(data_config, split: str) -> NpzSource:
    return NpzSource(data_config.root, split, spec_from_config(data_config))
