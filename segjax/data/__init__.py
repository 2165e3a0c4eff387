"""segjax's data layer: sources -> (weight map) -> augmentation -> grain batches.

- `sources`: random-access sources returning {'image' uint8 (H, W, C), 'label'
  int32 (H, W) class indices or None, 'name'}: `FolderSource` (<root>/<split>/
  images + labels), `TfdsSource` (a prepared tfds dataset through
  `tfds.data_source`, array_record, no TensorFlow), `SyntheticSource` (shapes
  for unit tests); `make_source(config.data, split)` picks one by
  data.source. Raw label values become class indices here (data.label_values,
  data.ignore_values -> data.ignore_index).
  `SourceView` (positions of a source, read on access) and `load_split` (a
  split's examples for evaluation).
- `volume_files` (NIfTI, TIFF stacks, .npy), `volume_sources` (volume
  examples {'image' float32 (D, H, W, C), 'label' (D, H, W), 'spacing',
  'affine'}: the 'volume', 'stack' and 'tfds_volume' sources),
  `volume_patches` (foreground-oversampled 3D training patches).
- `normalization`: data.normalization ('fixed' mean/std, per-volume 'zscore'),
  for training and inference alike.
- `weight_map`: the U-Net paper's border-stressing loss weights.
- `transforms`: joint image/label/weight augmentations, plain functions of
  (numpy rng, example), 2D and 3D.
- `pipeline`: `make_train_loader(config.data, seed=..., process_index=...,
  process_count=...)`, a deterministic, per-process sharded, checkpointable grain
  iterator of batches; `sources.load_split` reads a split for evaluation.
- `released`: Cityscapes, ADE20K, VOC 2012 + SBD and COCO-Stuff-164k read in their
  released layouts (sources 'cityscapes_semantic', 'ade20k_sceneparsing',
  'voc2012_aug', 'coco_stuff164k').
- `builders`: tfds builders ('isbi2012_em', 'camvid', 'msd_brain_tumour', the
  panoptic ones and the released layouts') that download the public data or read
  a local folder (`python -m segjax.data.builders NAME --source DIR`). Imported on
  demand: it pulls in tensorflow_datasets.

Labels never pass through interpolation (nearest only), and every random
choice of a training example is a function of (seed, its position in the
global stream), so runs are reproducible across process and worker counts.
"""

from segjax.data.pipeline import local_batch_size, make_train_loader
from segjax.data.sources import (FolderSource, SourceView, SyntheticSource, TfdsSource,
                                 load_split, make_source)
from segjax.data.weight_map import unet_weight_map

__all__ = ["FolderSource", "SourceView", "SyntheticSource", "TfdsSource", "load_split",
           "local_batch_size", "make_source", "make_train_loader", "unet_weight_map"]
