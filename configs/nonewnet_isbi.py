"""No New-Net (Isensee et al. 2018) on the ISBI 2012 EM stack, and its 2D twin on the same split.

ISBI 2012's 30 labelled 512x512 serial sections form a 30x512x512 volume
(section thickness 50 nm, pixels 4x4 nm). Slices 0-23 train as ONE volume
(data.source='stack', split 'train[:24]'); slices 24-29 are the held-out
volume, predicted whole by a sliding window of training-patch tiles (overlap
1/2, Gaussian blending, as nnU-Net) and scored by mIoU over its 6x512x512
voxels. The network is `nonewnet` at the paper's widths (30-480, instance
norm, leaky ReLU, feature maps reduced before upsampling) with 1 input
channel and 2 classes (membrane, cell interior); patches of 16x96x96 voxels
(4 poolings need 16 along each axis; the paper's 128^3 does not fit 24
sections or this CPU), batch 2, per-volume z-scores, foreground-oversampled
patches, flips along all three axes and quarter turns in the section plane
(no out-of-plane rotation or elastic deformation: depth spacing is 12.5x the
in-plane one), the Dice + cross-entropy loss, Adam.

`2d` trains the same class at rank 2 (the same widths, norms and
activations; its 3x3 kernels instead of 3x3x3) on the same 24 sections as
2D images (crops of 192x192, batch 8: the same 294,912 voxels per step) and
evaluates on sections 24-29 whole; everything else (normalisation, loss,
optimiser, steps, time budget) is shared, so the two runs compare 3D context
against 2D at one budget.

    python -m segjax.main --config configs/nonewnet_isbi.py:cpu --workdir runs/nonewnet_isbi
    python -m segjax.main --config configs/nonewnet_isbi.py:cpu,2d --workdir runs/nonewnet2d_isbi
    python -m segjax.main --config configs/nonewnet_isbi.py:smoke --workdir /tmp/smoke3d

Arguments after ':' (comma separated): `cpu` (the stated CPU budget: 40
minutes of training, evaluation at the end and every 150 steps), `smoke` (a
seconds-long run at tiny widths and patches), `2d` (the 2D twin).
"""

from segjax.config import base_config
from segjax.data import datasets

OPTIONS = {"smoke", "cpu", "2d"}


def get_config(arg: str = ""):
    options = set(filter(None, (arg or "").split(",")))
    unknown = options - OPTIONS
    if unknown:
        raise ValueError(f"configs/nonewnet_isbi.py: unknown argument(s) {sorted(unknown)}; "
                         f"valid: {', '.join(sorted(OPTIONS))}")
    volumetric = "2d" not in options
    config = base_config()

    config.model.name = "nonewnet"
    config.model.num_classes = 2

    datasets.apply("isbi2012_em", config.data)   # labels 0 membrane, 255 interior; root
    config.data.train_split = "train[:24]"
    config.data.val_split = "train[24:30]"
    config.data.normalization = "zscore"
    config.data.volume.zscore_over = "all"        # EM has no zero background
    config.data.volume.foreground_fraction = 0.33
    config.data.augment.hflip = True
    config.data.augment.vflip = True
    config.data.augment.rot90 = True
    config.data.num_workers = 1
    if volumetric:
        config.data.source = "stack"
        config.data.volume.spacing = (50.0, 4.0, 4.0)   # nm: section thickness, pixel size
        config.data.augment.dflip = True
        config.data.crop = (16, 96, 96)
        config.data.batch_size = 2
        config.eval.tile = (16, 96, 96)
        config.eval.overlap = 0.5
        config.eval.blend = "gaussian"
        config.eval.batch_size = 2
    else:
        config.data.source = "folder"
        config.data.crop = (192, 192)
        config.data.batch_size = 8
        config.eval.tile = ()                      # 512 x 512 sections whole

    config.loss.name = "dice_ce"

    config.optim.name = "adam"
    config.optim.learning_rate = 3e-4
    config.optim.schedule = "constant"

    config.train.steps = 3000
    config.train.max_minutes = 0.0
    config.train.log_every = 10
    config.train.eval_every = 500
    config.train.checkpoint_every = 50

    if "cpu" in options:
        config.train.max_minutes = 40.0
        config.train.eval_every = 150

    if "smoke" in options:
        config.model.width = 4
        config.model.depth = 2
        config.data.train_split = "train[:6]"
        config.data.val_split = "train[24:26]"
        config.data.num_workers = 0
        config.data.crop = (8, 32, 32) if volumetric else (64, 64)
        config.data.batch_size = 2
        config.eval.tile = (8, 128, 128) if volumetric else ()
        config.train.steps = 4
        config.train.max_minutes = 0.0
        config.train.log_every = 2
        config.train.eval_every = 4
        config.train.checkpoint_every = 2
        config.train.num_overlays = 1
        config.train.progress_bar = False
    config.lock()
    return config
