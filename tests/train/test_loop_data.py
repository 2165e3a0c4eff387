"""The training loop and its data: a missing dataset, split integrity, the stream position,
and the start-up decode of the validation split."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segjax.data import datasets
from segjax.train import loop
from tests.train.conftest import tiny_config


def test_a_run_without_its_data_leaves_no_workdir(tmp_path):
    """Before: a chained ConnectionError traceback and an empty workdir left behind."""
    config = tiny_config(data__source="folder", data__dataset="isbi2012_em",
                         data__root=str(tmp_path / "cache" / "isbi2012_em"),
                         data__download_url="http://127.0.0.1:9/")
    with pytest.raises(datasets.DatasetUnavailable, match=r"SEGJAX_DATA"):
        loop.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def write_folder(root: Path, count: int, *, size: int = 24, start: int = 0) -> Path:
    """<root>/train/{images,labels}/<i>.png: noise images and 3-class labels (0, 1, 2)."""
    rng = np.random.default_rng(start)
    for folder in ("images", "labels"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        image = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(image).save(root / "train" / "images" / f"{index}.png")
        Image.fromarray((image // 86).astype(np.uint8)).save(
            root / "train" / "labels" / f"{index}.png")
    return root


def folder_config(root: Path, **overrides):
    return tiny_config(data__source="folder", data__root=str(root),
                       data__train_split="train[:4]", data__val_split="train[4:6]",
                       data__augment__hflip=False, **overrides)


def test_a_truncated_validation_png_stops_the_run_before_training(tmp_path):
    """Before: the header check passed, training ran, and the final evaluation failed."""
    root = write_folder(tmp_path / "data", 6)
    broken = root / "train" / "images" / "5.png"
    broken.write_bytes(broken.read_bytes()[:len(broken.read_bytes()) * 2 // 3])
    with Image.open(broken) as image:
        assert image.size == (24, 24)  # the header still reads
    steps = []
    with pytest.raises(datasets.DataError) as caught:
        loop.train_and_evaluate(folder_config(root), tmp_path / "run",
                                hooks=[lambda step, state: steps.append(step)])
    message = str(caught.value)
    assert "\n" not in message and str(broken) in message and "train[4:6]" in message
    assert steps == []
    assert not (tmp_path / "run" / "checkpoints").exists() or \
        not any((tmp_path / "run" / "checkpoints").iterdir())


def test_a_batch_size_change_on_resume_skips_no_example(tmp_path, monkeypatch):
    """Batch 2 for 3 steps, resumed with batch 4: step 4 reads stream positions 6-9. Before:
    the saved iterator counted batches, so step 4 read positions 12-15 (6 examples skipped)."""
    from segjax.data import pipeline
    from segjax.train import checkpoint
    seen = []
    original = pipeline.TrainExample.__call__

    def recording(self, position):
        seen.append(int(position))
        return original(self, position)

    monkeypatch.setattr(pipeline.TrainExample, "__call__", recording)
    small = tiny_config(data__batch_size=2, data__prefetch=0, data__val_split="",
                        train__steps=3, train__log_every=3, train__checkpoint_every=3)
    loop.train_and_evaluate(small, tmp_path)
    assert seen == list(range(6))
    seen.clear()
    large = tiny_config(data__batch_size=4, data__prefetch=0, data__val_split="",
                        train__steps=4, train__log_every=1, train__checkpoint_every=1)
    loop.train_and_evaluate(large, tmp_path)
    assert seen == [6, 7, 8, 9]
    saver = checkpoint.TrainingCheckpoints(tmp_path, large)
    meta = saver.manager.restore(4, args=checkpoint.orbax_checkpoint().args.Composite(
        meta=checkpoint.orbax_checkpoint().args.JsonRestore())).meta
    saver.close()
    assert (meta["examples"], meta["batch_size"]) == (10, 4)


def test_a_resume_on_a_changed_folder_is_refused_naming_the_files(tmp_path):
    """Before: slice 1 removed, train[:4] silently became slices 0, 2, 3, 4 on resume."""
    import json
    from segjax.train import splits
    root = write_folder(tmp_path / "data", 7)
    config = folder_config(root, train__steps=2,
                           train__eval_every=100)
    loop.train_and_evaluate(config, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / splits.SPLITS_FILE).read_text())
    assert recorded["data.train_split"] == {
        "split": "train[:4]", "files": [f"train/images/{i}.png" for i in range(4)]}
    assert recorded["data.val_split"]["files"] == ["train/images/4.png", "train/images/5.png"]
    before = (tmp_path / "run" / "config.json").read_text()

    for folder in ("images", "labels"):
        (root / "train" / folder / "1.png").unlink()
    longer = folder_config(root, train__steps=4,
                           train__eval_every=100)
    with pytest.raises(splits.SplitsChanged,
                       match=r"data.train_split 'train\[:4\]' \(added 1: train/images/4.png; "
                             r"missing 1: train/images/1.png\); data.val_split 'train\[4:6\]' "
                             r"\(added 1: train/images/6.png; missing 1: train/images/4.png\)"
                             r"\. Resume refused"):
        loop.train_and_evaluate(longer, tmp_path / "run")
    assert (tmp_path / "run" / "config.json").read_text() == before
    assert json.loads((tmp_path / "run" / splits.SPLITS_FILE).read_text()) == recorded
