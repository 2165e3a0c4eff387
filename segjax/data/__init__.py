"""segjax's data layer: sources -> (weight map) -> augmentation -> grain batches.

- `sources`: random-access sources returning {'image' uint8 (H, W, C), 'label'
  int32 (H, W) class indices or None, 'name'}: `FolderSource` (<root>/<split>/
  images + labels), `TfdsSource` (a prepared tfds dataset through
  `tfds.data_source`, array_record, no TensorFlow), `SyntheticSource` (shapes
  for unit tests); `make_source(config.data, split)` picks one by
  data.source. Raw label values become class indices here (data.label_values,
  data.ignore_values -> data.ignore_index).
- `volumes`: volumes ({'image' float32 (D, H, W, C), 'label' (D, H, W),
  'spacing', 'affine'}) from NIfTI, TIFF stacks and .npy ('volume', 'stack',
  'tfds_volume' sources), per-volume z-scores, foreground-oversampled 3D
  training patches.
- `weight_map`: the U-Net paper's border-stressing loss weights.
- `transforms`: joint image/label/weight augmentations, plain functions of
  (numpy rng, example), 2D and 3D.
- `pipeline`: `make_train_loader(config.data, seed=..., process_index=...,
  process_count=...)`, a deterministic, per-process sharded, checkpointable grain
  iterator of batches; `load_split` and `normalize` for evaluation.
- `builders`: tfds builders ('isbi2012_em', 'camvid', 'msd_brain_tumour') that
  download the public data or read a local folder (`python -m
  segjax.data.builders`). Imported on demand: it pulls in tensorflow_datasets.

Labels never pass through interpolation (nearest only), and every random
choice of a training example is a function of (seed, its position in the
global stream), so runs are reproducible across process and worker counts.
"""

from segjax.data.pipeline import load_split, local_batch_size, make_train_loader, normalize
from segjax.data.sources import FolderSource, SyntheticSource, TfdsSource, make_source
from segjax.data.weight_map import unet_weight_map

__all__ = ["FolderSource", "SyntheticSource", "TfdsSource", "load_split", "local_batch_size",
           "make_source", "make_train_loader", "normalize", "unet_weight_map"]
