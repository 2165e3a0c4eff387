"""Panoptic-DeepLab (Cheng et al. 2020) on ISBI 2012: cells as things, membranes as stuff.

ISBI 2012's labels become panoptic ground truth through the "panoptic_folder"
source: every 4-connected component of the cell-interior class is an
instance (a thing), the membrane class is stuff. Slices 0-24 train, 25-29
are held out. The paper's losses (bootstrapped cross-entropy on the hardest
20% of pixels, 200 x centre MSE, 0.01 x offset L1, small instances weighted
3), targets with sigma 8, post-processing with threshold 0.1, NMS 7, top 200.

    python -m segjax.main --config configs/panoptic_deeplab_isbi.py --workdir runs/pd_isbi
    python -m segjax.main --config configs/panoptic_deeplab_isbi.py:cpu --workdir runs/pd_isbi_cpu
    python -m segjax.main --config configs/panoptic_deeplab_isbi.py:smoke --workdir /tmp/smoke

Arguments after ':' (comma separated):
- (none): `panoptic_deeplab_resnet50` (output stride 16) on 512 x 512 slices,
  batch 8, Adam 2.5e-4 with poly decay, 4000 steps: a GPU run.
- `cpu`: a small Panoptic-DeepLab for the 2-core CPU budget: ResNet-18 at
  output stride 16 with the dual decoders at half width (ASPP and semantic
  decoder 128, instance decoder 64, heads 128 / 32), 256 x 256 crops, batch 4,
  Adam 1e-3 with poly decay, 600 steps or 90 minutes of training, and small
  instances weighted 1, not the paper's 3: in a 256 x 256 crop nearly every
  cell is below the paper's 64 x 64 "small" area, so the weight becomes a
  class weight of 3 for interior against membrane, and a short run then never
  predicts membrane (docs/panoptic.md has both runs).
- `axial`: Axial-DeepLab-S (`axial_deeplab_s_panoptic`) instead of the ResNet.
- `smoke`: seconds: a tiny ResNet-18 model, 2 slices, 64 x 64 crops, 4 steps.
"""

from segjax.config import base_config
from segjax.data import datasets

OPTIONS = ("smoke", "cpu", "axial")


def small_panoptic_deeplab(config, *, width: int, instance_width: int, head: int):
    """ResNet-18 (OS 16) + Panoptic-DeepLab's dual decoders at the given widths."""
    config.model.name = "segmenter"
    config.model.encoder = {"name": "resnet18", "output_stride": 16}
    config.model.decoder = {
        "name": "panoptic_deeplab", "rates": (6, 12, 18), "aspp_features": width,
        "semantic_features": width, "instance_features": instance_width,
        "semantic_low_level_features": (64, 32), "instance_low_level_features": (32, 16),
        "instance_head_channels": 32}
    config.model.head = {"name": "panoptic_deeplab", "channels": head}
    config.model.align_corners = True


def get_config(arg: str = ""):
    options = set(filter(None, (arg or "").split(",")))
    unknown = options - set(OPTIONS)
    if unknown:
        raise ValueError(f"configs/panoptic_deeplab_isbi.py: unknown argument(s) "
                         f"{sorted(unknown)}; valid: {', '.join(OPTIONS)}")
    config = base_config()
    config.model.name = "panoptic_deeplab_resnet50"
    config.model.num_classes = 2

    datasets.apply("isbi2012_em", config.data)      # slices 0-24 train, 25-29 held out
    config.data.source = "panoptic_folder"
    config.data.panoptic.thing_classes = (1,)       # cells (interior components); membrane: stuff
    config.data.crop = (512, 512)
    config.data.batch_size = 8
    config.data.num_workers = 1
    config.data.augment.hflip = True
    config.data.augment.vflip = True
    config.data.augment.rot90 = True
    config.data.augment.scale = (0.75, 1.25)

    config.loss.name = "bootstrapped_cross_entropy+center_mse+offset_l1"
    config.loss.weights = (1.0, 200.0, 0.01)
    config.loss.top_k_percent = 0.2

    config.optim.name = "adam"
    config.optim.learning_rate = 2.5e-4
    config.optim.schedule = "poly"
    config.optim.warmup_steps = 0

    config.train.steps = 4000
    config.train.log_every = 20
    config.train.eval_every = 500
    config.train.checkpoint_every = 250
    config.eval.batch_size = 1

    if "cpu" in options:
        small_panoptic_deeplab(config, width=128, instance_width=64, head=128)
        config.data.crop = (256, 256)
        config.data.batch_size = 4
        config.optim.learning_rate = 1e-3
        config.data.panoptic.small_instance_weight = 1.0
        config.train.steps = 600
        config.train.max_minutes = 90.0
        config.train.eval_every = 150
        config.train.checkpoint_every = 50
        config.train.log_every = 10
    if "axial" in options:
        config.model = base_config().model
        config.model.name = "axial_deeplab_s_panoptic"
        config.model.num_classes = 2
    if "smoke" in options:
        small_panoptic_deeplab(config, width=16, instance_width=8, head=16)
        config.data.train_split = "train[:2]"
        config.data.val_split = "train[25:26]"
        config.data.num_workers = 0
        config.data.crop = (64, 64)
        config.data.batch_size = 2
        config.train.steps = 4
        config.train.max_minutes = 0.0
        config.train.log_every = 2
        config.train.eval_every = 4
        config.train.checkpoint_every = 2
        config.train.num_overlays = 1
        config.train.progress_bar = False
    config.lock()
    return config
