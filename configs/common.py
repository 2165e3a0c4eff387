"""The config schema every experiment config starts from (see ../shared/DESIGN.md).

`base_config()` returns a ConfigDict with every section and every key a part
of segjax reads, with defaults. Experiment configs (`configs/<arch>_<data>.py`)
change values; a key that is not in the schema is an error on the command
line (`--config.train.stpes=1` fails naming `stpes`), because ConfigDicts
built here are locked.

Sections: model, data, loss, optim, train, eval, mesh, imports.
"""

from __future__ import annotations

import os
from pathlib import Path

import ml_collections

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root(dataset: str) -> str:
    """Where a dataset lives: $SEGJAX_DATA/<dataset> or ../shared/data/<dataset>.

    `SEGJAX_DATA` names a directory that holds dataset folders (isbi2012_em/,
    camvid/); a directory that is itself the dataset (has images/ or train/)
    is accepted too.
    """
    env = os.environ.get("SEGJAX_DATA")
    if env:
        candidate = Path(env)
        return str(candidate / dataset if (candidate / dataset).is_dir() else candidate)
    return str(REPO_ROOT.parent / "shared" / "data" / dataset)


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.model = ml_collections.ConfigDict()
    config.model.name = ""
    config.model.num_classes = 2
    config.model.dtype = "float32"          # compute dtype; parameters stay float32
    config.model.conv_impl = "auto"          # segjax.ops.conv formulation: auto | native | ...
    config.model.init_from = ""              # checkpoint (or workdir) to start training from
    config.model.init_from_part = "all"      # all | encoder (re-initialises the rest)

    config.data = ml_collections.ConfigDict()
    config.data.source = "folder"            # folder | tfds | synthetic
    config.data.root = ""                    # folder root / tfds data_dir
    config.data.tfds_name = ""               # tfds builder name for source=tfds
    config.data.train_split = "train"        # 'train', 'train[:25]', 'train[25:30]'
    config.data.val_split = "val"
    config.data.image_channels = 3
    config.data.label_values = ()           # raw value of class i at position i; () = identity
    config.data.ignore_values = ()           # raw label values mapped to ignore_index
    config.data.ignore_index = 255           # class-space label that the loss/metrics skip
    config.data.class_names = ()
    config.data.crop = (512, 512)            # training crop of the (padded) input
    config.data.pad_margin = 0               # mirrored context around labels (valid convs)
    config.data.mean = (0.5,)
    config.data.std = (0.5,)
    config.data.batch_size = 8               # global batch over all processes
    config.data.num_workers = 0              # grain worker processes (0: in-process)
    config.data.prefetch = 2
    config.data.augment = ml_collections.ConfigDict(dict(
        hflip=True, vflip=False, rot90=False, scale=(1.0, 1.0), rotate_degrees=0.0,
        elastic_sigma=0.0,                   # U-Net paper: 10 (pixels, on a 3x3 grid)
        elastic_grid=3, brightness=0.0, contrast=0.0))
    config.data.weight_map = ml_collections.ConfigDict(dict(enabled=False, w0=10.0, sigma=5.0,
                                                            balance=True))
    config.data.synthetic = ml_collections.ConfigDict(dict(num_examples=16, height=64,
                                                           width=64, num_classes=2))

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "cross_entropy"       # cross_entropy | dice | cross_entropy+dice
    config.loss.class_weights = ()           # one weight per class, () for none
    config.loss.use_weight_map = False       # multiply by the batch's 'weight' map
    config.loss.dice_weight = 1.0
    config.loss.aux_weight = 0.4             # for models returning aux_logits
    config.loss.label_smoothing = 0.0

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"               # adam | adamw | sgd
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "constant"       # constant | poly | cosine
    config.optim.warmup_steps = 0
    config.optim.poly_power = 0.9
    config.optim.end_learning_rate = 0.0
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0        # 0 disables
    config.optim.accumulate_steps = 1        # optax.MultiSteps when > 1

    config.train = ml_collections.ConfigDict()
    config.train.steps = 1000
    config.train.seed = 0
    config.train.log_every = 10
    config.train.eval_every = 200
    config.train.checkpoint_every = 200
    config.train.keep_checkpoints = 2
    config.train.max_minutes = 0.0           # wall-clock budget for training (0: none)
    config.train.progress_bar = True
    config.train.num_overlays = 4            # PNG overlays of validation predictions

    config.eval = ml_collections.ConfigDict()
    config.eval.tile = ()                    # sliding-window input tile; () = whole image
    config.eval.overlap = 0.0                # fraction of the output tile
    config.eval.blend = "average"            # average | gaussian
    config.eval.scales = (1.0,)
    config.eval.flip = False
    config.eval.batch_size = 4               # tiles per device call
    config.eval.crf = False
    # Dense CRF (segjax.ops.crf): DeepLab v2's parameters; normalization "after" | "symmetric".
    config.eval.crf_params = ml_collections.ConfigDict(dict(
        iterations=10, bi_w=4.0, bi_xy_std=67.0, bi_rgb_std=3.0, pos_w=3.0, pos_xy_std=1.0,
        normalization="after"))

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1                    # -1: all devices on the batch axis
    config.mesh.model = 1

    config.imports = ()
    return config
