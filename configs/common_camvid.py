"""What every CamVid experiment shares: the data section, the optimiser, the arguments.

CamVid here is SegNet's 11-class version (../shared/data/camvid, see its
SOURCE.md): 367 train / 101 val / 233 test frames of 360x480, label PNGs hold
class ids 0..10 and 11 = void, which is ignored. Not an experiment config
itself: `configs/<arch>_camvid.py` call `camvid_config(...)` and set the model.

Optimiser. By default these configs train from scratch (the results in the
README were measured without network access). From scratch and on short
budgets Adam with DeepLab's poly decay (lr * (1 - t / T) ** 0.9) reaches a
useful mIoU in far fewer steps than DeepLab's SGD (momentum 0.9, lr 0.01),
which was tuned for ImageNet-initialised backbones; `:sgd` switches to that
recipe. `:finetune` starts the encoder from its ImageNet preset
(`config.model.init_from` names the preset, `init_from_part = "encoder"`:
`segjax.pretrained` downloads, verifies and converts it once, then reads its
cache) with the config's fine-tuning optimiser.

Arguments after ':' (comma separated):
  smoke  a seconds-long run: 64x64 crops of 4 training frames, batch 2,
         4 steps, evaluated on 2 validation frames.
  cpu    a budget for these 2-core CPU machines: 360 steps of 256x256 crops,
         batch 4 (DeepLabv3+ ResNet-50's time is in the README), stop after
         `train.max_minutes` = 120 in any case.
  sgd    DeepLab's SGD recipe instead of Adam.
  finetune  start the encoder from the ImageNet preset the config names
         (`finetune=` of `camvid_config`), with the config's fine-tuning
         optimiser; combines with smoke and cpu.
"""

from __future__ import annotations

from configs import common
from segjax.config import base_config
from segjax.data import datasets

CLASS_NAMES = datasets.get("camvid").class_names
OPTIONS = ("smoke", "cpu", "sgd", "finetune")


def parse_options(arg: str, config_file: str) -> set[str]:
    options = set(filter(None, (arg or "").split(",")))
    unknown = options - set(OPTIONS)
    if unknown:
        raise ValueError(f"{config_file}: unknown argument(s) {sorted(unknown)}; "
                         f"valid: {', '.join(OPTIONS)}")
    return options


def camvid_config(arg: str, config_file: str, *, learning_rate: float = 1e-3,
                  sgd_learning_rate: float = 0.01, finetune: str = "",
                  finetune_optim: dict | None = None):
    """Base config with CamVid data and the optimiser; the caller sets config.model.

    `finetune`: the encoder whose ImageNet preset `:finetune` starts from (a key of
    configs/common.py's PRESETS); `finetune_optim`: config.optim fields for it.
    """
    options = parse_options(arg, config_file)
    if "finetune" in options and not finetune:
        raise ValueError(f"{config_file}: no pretrained encoder to fine-tune from "
                         "(argument 'finetune')")
    config = base_config()
    config.model.num_classes = len(CLASS_NAMES)

    # Folder source, label PNGs hold class ids 0..10, 11 = void (ignored), ImageNet mean/std.
    datasets.apply("camvid", config.data)
    config.data.crop = (352, 480)            # 360x480 frames, scaled then cropped/padded
    config.data.batch_size = 8
    config.data.num_workers = 2
    config.data.augment.hflip = True
    config.data.augment.scale = (0.5, 2.0)   # DeepLab's random scaling

    config.loss.name = "cross_entropy"

    config.optim.name = "adamw"
    config.optim.learning_rate = learning_rate
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "poly"
    config.optim.poly_power = 0.9
    config.optim.warmup_steps = 200
    if "sgd" in options:
        config.optim.name = "sgd"
        config.optim.learning_rate = sgd_learning_rate
        config.optim.momentum = 0.9
        config.optim.warmup_steps = 0

    # About 200 epochs of 367 frames at batch 8.
    config.train.steps = 9000
    config.train.log_every = 20
    config.train.eval_every = 1000
    config.train.checkpoint_every = 500

    config.eval.tile = ()                    # whole 360x480 frames
    config.eval.batch_size = 2

    if "finetune" in options:
        config.model.init_from = common.preset(finetune)
        config.model.init_from_part = "encoder"
        for field, value in (finetune_optim or {}).items():
            setattr(config.optim, field, value)

    if "cpu" in options:
        # 360 steps (~4 epochs of crops), so that the poly schedule runs to its end
        # within a CPU session (the README has DeepLabv3+ ResNet-50's time).
        config.data.crop = (256, 256)
        config.data.batch_size = 4
        config.data.num_workers = 1
        config.optim.warmup_steps = 30
        config.train.steps = 360
        config.train.max_minutes = 120.0
        config.train.eval_every = 360
        config.train.checkpoint_every = 60

    if "smoke" in options:
        config.data.train_split = "train[:4]"
        config.data.val_split = "val[:2]"
        config.data.crop = (64, 64)
        config.data.batch_size = 2
        config.data.num_workers = 0
        config.optim.warmup_steps = 0
        config.train.steps = 4
        config.train.max_minutes = 0.0
        config.train.log_every = 2
        config.train.eval_every = 4
        config.train.checkpoint_every = 2
        config.train.num_overlays = 1
        config.train.progress_bar = False
    return config, options
