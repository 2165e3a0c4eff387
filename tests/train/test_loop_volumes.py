"""The training loop on volumes: 3D patches in, whole-volume sliding-window evaluation out."""

import json

import numpy as np

from segjax.train import loop
from tests.train.conftest import tiny_config


def _volume_folder(root, count=3, shape=(8, 16, 16)):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for index in range(count if split == "train" else 1):
            label = np.zeros(shape, np.uint8)
            label[2:6, 4:12, 3:9] = 1
            label[5:7, 1:4, 10:14] = 2
            image = (rng.normal(size=shape) + 3 * label).astype(np.float32)
            np.save(root / split / "images" / f"vol{index}.npy", image)
            np.save(root / split / "labels" / f"vol{index}.npy", label)
    return root


def test_nonewnet_trains_on_volume_patches_and_evaluates_whole_volumes(tmp_path):
    config = tiny_config(model__name="nonewnet", model__norm="instance",
                         data__source="volume", data__root=str(_volume_folder(tmp_path / "d")),
                         data__train_split="train", data__val_split="val",
                         data__normalization="zscore", data__crop=(4, 8, 8),
                         data__batch_size=2)
    config.unlock()
    config.model.act = "leaky_relu"
    config.eval.tile = (4, 8, 8)
    config.eval.overlap = 0.5
    config.eval.blend = "gaussian"
    config.lock()
    result = loop.train_and_evaluate(config, tmp_path / "run")
    assert len(result["per_class_iou"]) == 3 and len(result["per_class_dice"]) == 3
    record = json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
    assert record["split"] == "val" and 0.0 <= record["miou"] <= 1.0
    assert (tmp_path / "run" / "predictions" / "vol0.png").is_file()
