"""Training pipeline: batch contract, determinism, per-process sharding, checkpointing."""

import numpy as np
import pytest

from segjax.config import base_config
from segjax.data import pipeline, sources
from segjax.data.normalization import normalize


def _config(**changes):
    data = base_config().data
    data.source, data.image_channels, data.crop, data.batch_size = "synthetic", 1, (24, 24), 4
    data.synthetic.num_examples, data.synthetic.height, data.synthetic.width = 6, 32, 32
    data.augment.vflip, data.augment.rot90, data.augment.elastic_sigma = True, True, 4.0
    data.weight_map.enabled = True
    data.pad_margin = 4
    for key, value in changes.items():
        data[key] = value
    return data


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def _assert_same(batches, others):
    assert len(batches) == len(others)
    for batch, other in zip(batches, others):
        assert batch.keys() == other.keys()
        for key in batch:
            np.testing.assert_array_equal(batch[key], other[key])


def test_batch_contract_on_isbi(isbi_root):
    data = _config(source="folder", root=str(isbi_root), train_split="train[:2]",
                   label_values=(0, 255), crop=(64, 64), pad_margin=8, batch_size=2)
    batch = next(pipeline.make_train_loader(data, seed=0))
    assert batch["image"].shape == (2, 64, 64, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (2, 64, 64) and batch["label"].dtype == np.int32
    assert batch["weight"].shape == (2, 64, 64) and batch["weight"].dtype == np.float32
    assert set(np.unique(batch["label"])) <= {0, 1, 255}
    np.testing.assert_array_equal(batch["weight"][batch["label"] == 255], 0.0)
    assert -2.0 - 1e-6 <= batch["image"].min() and batch["image"].max() <= 2.0 + 1e-6
    assert "weight" not in next(pipeline.make_train_loader(
        _config(weight_map=dict(enabled=False, w0=10.0, sigma=5.0, balance=True)), seed=0))


def test_stream_is_epochs_of_permutations():
    order = pipeline.EpochPermutation(5, seed=3)
    epochs = [[order(e * 5 + i) for i in range(5)] for e in range(3)]
    assert all(sorted(epoch) == list(range(5)) for epoch in epochs)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]
    assert pipeline.StreamPosition(8, 4, 1)(5) == 8 + 4 + 1  # step 1, process 1, offset 1


def test_determinism_by_seed():
    first = _take(pipeline.make_train_loader(_config(), seed=7), 2)
    _assert_same(first, _take(pipeline.make_train_loader(_config(), seed=7), 2))
    other = next(pipeline.make_train_loader(_config(), seed=8))
    assert not np.array_equal(first[0]["image"], other["image"])


def test_two_processes_concatenate_to_the_single_process_batch():
    single = _take(pipeline.make_train_loader(_config(), seed=1), 3)  # 12 > 6 records: 2 epochs
    shards = [_take(pipeline.make_train_loader(_config(), seed=1, process_index=p,
                                               process_count=2), 3) for p in range(2)]
    for step, batch in enumerate(single):
        for key in batch:
            joined = np.concatenate([shards[0][step][key], shards[1][step][key]])
            np.testing.assert_array_equal(joined, batch[key])
    with pytest.raises(ValueError, match="data.batch_size=4"):
        pipeline.make_train_loader(_config(), seed=1, process_index=0, process_count=3)


class _Recording:
    """A source that remembers which records were read."""

    def __init__(self, source):
        self.source, self.read = source, set()

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        self.read.add(index)
        return self.source[index]


def test_a_process_reads_only_its_own_share():
    data = _config(prefetch=0, crop=(8, 8), pad_margin=0)
    data.synthetic.height = data.synthetic.width = 8
    source = _Recording(sources.SyntheticSource(200, 8, 8, 1, 2, seed=0))
    _take(pipeline.make_train_loader(data, seed=2, process_index=1, process_count=2,
                                     source=source), 3)
    order = pipeline.EpochPermutation(200, seed=2)
    own = {order(step * 4 + 2 + offset) for step in range(3) for offset in range(2)}
    assert source.read == own


def test_state_round_trip_and_start_step(tmp_path):
    import grain
    import orbax.checkpoint as ocp

    iterator = pipeline.make_train_loader(_config(), seed=4)
    _take(iterator, 3)
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    checkpointer.save(tmp_path / "ckpt",
                      args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
    state = iterator.get_state()
    expected = _take(iterator, 2)

    restored = pipeline.make_train_loader(_config(), seed=4)
    checkpointer.restore(tmp_path / "ckpt",
                         args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
    _assert_same(_take(restored, 2), expected)
    plain = pipeline.make_train_loader(_config(), seed=4)
    plain.set_state(state)
    _assert_same(_take(plain, 2), expected)
    _assert_same(_take(pipeline.make_train_loader(_config(), seed=4,
                                                   start_example=3 * _config().batch_size), 2),
                 expected)


def test_one_worker_process_gives_the_same_batches():
    expected = _take(pipeline.make_train_loader(_config(), seed=5), 2)
    iterator = pipeline.make_train_loader(_config(num_workers=1), seed=5)
    try:
        _assert_same(_take(iterator, 2), expected)
    finally:
        iterator.close()


def test_load_split_and_normalize(isbi_root):
    data = _config(source="folder", root=str(isbi_root), label_values=(0, 255))
    examples = sources.load_split(data, "train[25:27]")
    assert [e["name"] for e in examples] == ["25.png", "26.png"]
    assert [e["name"] for e in examples[1:]] == ["26.png"]
    assert examples[0]["image"].dtype == np.uint8 and examples[0]["label"].dtype == np.int32
    data.mean, data.std = (0.5,), (0.25,)
    np.testing.assert_allclose(normalize(np.array([[[255]]], np.uint8), data), 2.0)
    assert sources.load_split(data, "test[:1]")[0]["label"] is None


LEAK_RUN = """
from segjax.train import loop
from tests.train.conftest import tiny_config
loop.train_and_evaluate(tiny_config(data__num_workers=1, data__crop=(128, 128),
                                    data__synthetic__height=136, data__synthetic__width=136,
                                    train__steps=3, data__val_split=""), {workdir!r})
"""


def test_a_run_with_worker_processes_leaves_no_shared_memory_behind(tmp_path):
    from tests.train.conftest import run_python
    result = run_python(LEAK_RUN.format(workdir=str(tmp_path)), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "leaked shared_memory" not in result.stdout, result.stdout[-2000:]


def test_the_stream_position_counts_examples_across_a_batch_size_change():
    """Batch 2 for 3 steps, then batch 4 from example 6: the examples of an unbroken stream."""
    one_by_one = np.concatenate([b["image"] for b in _take(
        pipeline.make_train_loader(_config(batch_size=1), seed=7), 10)])
    first = np.concatenate([b["image"] for b in _take(
        pipeline.make_train_loader(_config(batch_size=2), seed=7), 3)])
    then = next(pipeline.make_train_loader(_config(batch_size=4), seed=7, start_example=6))
    np.testing.assert_array_equal(np.concatenate([first, then["image"]]), one_by_one)
