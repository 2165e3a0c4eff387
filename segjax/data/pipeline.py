"""The training input pipeline (grain): deterministic, sharded per process, checkpointable.

The global example stream is a function of the seed alone:

    epoch e      = a permutation of all record indices, drawn from (seed, e)
    stream       = epoch 0, epoch 1, ... (forever)
    global batch t = stream positions [s + t*B, s + (t+1)*B)    B = data.batch_size
    process p    loads positions [s + t*B + p*b, s + t*B + (p+1)*b)   b = B / process_count

and the augmentation of the example at stream position g draws from an rng
seeded by (seed, g) only. So the batches of P processes, concatenated in
process order, equal the single-process batch bit for bit, whatever the
number of processes or grain workers, and a process never reads another's
records. s is the loader's `start_example`: the stream position is counted
in examples, not batches, so a run resumed with another batch size (a
checkpoint stores the examples consumed) continues with the next unseen
example.

Per example: load record -> weight map of the full label (cached per record:
it depends on the label only) -> augment (scale, flips, rot90, rotation,
elastic, brightness/contrast) -> mirror pad by data.pad_margin -> random crop
to data.crop -> panoptic targets (examples with an 'instance' map) ->
normalise. Batches are dicts of numpy arrays: 'image' float32
(b, H, W, C), 'label' int32 (b, H, W) (channel-stack masks, data.label_format
'channels': (b, H, W, K)) and 'weight' float32 (b, H, W) when
data.weight_map.enabled, and for panoptic sources the targets of
`segjax.data.panoptic` ('center', 'offset', 'center_weight',
'offset_weight', 'semantic_weight'), computed after augmentation and cropping.
A volume example (D, H, W, C) becomes a patch of
data.crop by `segjax.data.volume_patches.training_patch` (normalise the volume,
foreground-oversampled patch, the same transforms in 3D), and batches are
'image' (b, D, H, W, C), 'label' (b, D, H, W); the stream, sharding and
iterator state are the same.

Normalisation is `segjax.data.normalization` (data.normalization).

The iterator `make_train_loader` returns is a grain DatasetIterator:
`get_state()` / `set_state()` continue with exactly the next batch, and the
state saves through Orbax with `grain.checkpoint.CheckpointSave(iterator)`.
With data.num_workers > 0 batches are produced by grain worker processes,
which need a `__main__` guard in the launching script (flags are parsed with
their defaults if absl.app.run has not parsed them); `iterator.close()` stops
them.
"""

from __future__ import annotations

import sys

import grain
import numpy as np

from segjax.data import panoptic, transforms
from segjax.data.normalization import normalize
from segjax.data.sources import make_source
from segjax.data.volume_patches import training_patch
from segjax.data.weight_map import weight_map_from_config

_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


def local_batch_size(data_config, process_count: int) -> int:
    """data.batch_size // process_count; an error when it does not divide."""
    batch_size = int(data_config.batch_size)
    if batch_size <= 0 or batch_size % process_count:
        raise ValueError(f"data.batch_size={batch_size} must be a positive multiple of the "
                         f"process count {process_count}")
    return batch_size // process_count


class StreamPosition:
    """Process-local position k -> global stream position (see the module docstring)."""

    def __init__(self, global_batch: int, local_batch: int, process_index: int,
                 start_example: int = 0):
        self.global_batch, self.local_batch = global_batch, local_batch
        self.process_index, self.start_example = process_index, int(start_example)

    def __call__(self, local_position: int) -> int:
        step, offset = divmod(int(local_position), self.local_batch)
        return (self.start_example + step * self.global_batch
                + self.process_index * self.local_batch + offset)


class EpochPermutation:
    """Global stream position -> record index: epoch e is a permutation drawn from (seed, e)."""

    def __init__(self, num_records: int, seed: int):
        self.num_records, self.seed = num_records, seed
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        permutation = self._cache.get(epoch)
        if permutation is None:
            rng = np.random.default_rng([self.seed, _SHUFFLE_STREAM, epoch])
            permutation = rng.permutation(self.num_records)
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[epoch] = permutation
        return permutation

    def __call__(self, position: int) -> int:
        epoch, index = divmod(int(position), self.num_records)
        return int(self.permutation(epoch)[index])


class TrainExample:
    """Global stream position -> one augmented, padded, cropped, normalised example."""

    def __init__(self, data_config, source, seed: int):
        self.config = data_config
        self.source = source
        self.seed = seed
        self.order = EpochPermutation(len(source), seed)
        self.ignore_index = int(data_config.ignore_index)
        self._weights: dict[int, np.ndarray] = {}

    def weight(self, record: int, label: np.ndarray) -> np.ndarray:
        if label.ndim != 2:
            raise ValueError("data.weight_map: the U-Net border weights separate touching "
                             "objects of a class-index label; channel-stack masks "
                             "(data.label_format='channels') have no such map")
        if record not in self._weights:
            self._weights[record] = weight_map_from_config(
                label, self.config.weight_map, ignore_index=self.ignore_index)
        return self._weights[record]

    def __call__(self, position: int) -> dict:
        record = self.order(position)
        example = self.source[record]
        if example["label"] is None:
            raise ValueError(f"training split {self.config.train_split!r} has no labels "
                             f"(record {example['name']})")
        rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, int(position)])
        if example["image"].ndim == 4:
            return training_patch(rng, example, self.config)
        example = {key: example[key] for key in ("image", "label", "instance") if key in example}
        if self.config.weight_map.enabled:
            example["weight"] = self.weight(record, example["label"])
        example = transforms.augment(rng, example, self.config.augment,
                                     ignore_index=self.ignore_index)
        example = transforms.mirror_pad(example, int(self.config.pad_margin),
                                        ignore_index=self.ignore_index)
        if len(self.config.crop):
            example = transforms.random_crop(rng, example, self.config.crop,
                                             ignore_index=self.ignore_index)
        if "instance" in example:  # after the geometry, so the targets describe this crop
            example = panoptic.targets_from_config(example, self.config)
        example["image"] = normalize(example["image"], self.config)
        example["label"] = example["label"].astype(np.int32)
        if "weight" in example:
            example["weight"] = example["weight"].astype(np.float32)
        return example


def train_dataset(data_config, *, seed: int, process_index: int = 0, process_count: int = 1,
                  start_example: int = 0, source=None) -> grain.MapDataset:
    """This process's batches as an (endless) grain.MapDataset; element t is its part of the
    global batch at stream positions [start_example + t*B, start_example + (t+1)*B).
    `source` overrides make_source(data_config, data.train_split)."""
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0 (train.seed), got {seed}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    local_batch = local_batch_size(data_config, process_count)
    if source is None:
        source = make_source(data_config, data_config.train_split)
    if len(source) == 0:
        raise ValueError(f"training split {data_config.train_split!r} is empty")
    if int(start_example) < 0:
        raise ValueError(f"start_example must be >= 0, got {start_example}")
    positions = grain.MapDataset.range(0, sys.maxsize)
    positions = positions.map(StreamPosition(int(data_config.batch_size), local_batch,
                                             process_index, int(start_example)))
    examples = positions.map(TrainExample(data_config, source, int(seed)))
    return examples.batch(local_batch, drop_remainder=True)


def _ensure_flags_parsed() -> None:
    """grain's worker start-up reads absl flags; outside absl.app.run (tests, notebooks) use
    their defaults rather than fail with UnparsedFlagAccessError."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_train_loader(data_config, *, seed: int, process_index: int = 0, process_count: int = 1,
                      start_example: int = 0, source=None) -> grain.DatasetIterator:
    """A checkpointable iterator over this process's training batches (see the module
    docstring). `start_example` begins at that global stream position (to resume without
    a saved iterator state: examples consumed, whatever the batch size was); restore a
    saved state into an iterator made with the same arguments."""
    dataset = train_dataset(data_config, seed=seed, process_index=process_index,
                            process_count=process_count, start_example=start_example,
                            source=source)
    prefetch = max(int(data_config.prefetch), 0)
    iter_dataset = dataset.to_iter_dataset(
        grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch))
    workers = int(data_config.num_workers)
    if workers > 0:
        _ensure_flags_parsed()
        iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=workers, per_worker_buffer_size=max(prefetch, 1))).map(_own_copy)
    return iter(iter_dataset)


def _own_copy(batch: dict) -> dict:
    """Batches from worker processes arrive in shared memory, unlinked only when the last
    view of them is garbage collected; a device array built from such a view (a zero-copy
    CPU transfer) could keep one alive until the interpreter exits, and Python then reports
    it as leaked. A plain copy, made here in the main process, frees each segment at once."""
    return {key: np.array(value) for key, value in batch.items()}
