"""No New-Net (Isensee et al., BraTS 2018, arXiv:1809.10483) on BraTS (MSD Task01_BrainTumour).

The paper's setting: the 3D U-Net with instance norm and leaky ReLU (30 base
filters, 4 poolings, `nonewnet`), 4 MRI modalities z-scored within the brain,
128 x 128 x 128 patches, batch 2, Adam with a learning rate of 1e-4, the
multi-class Dice + cross-entropy loss, 300 epochs of 100 iterations,
augmentation by scaling, rotations, elastic deformation, gamma and mirroring;
evaluated with a sliding window (overlap 1/2, Gaussian weights) and mirroring.
Reported: BraTS 2018 test Dice 87.81 whole tumour, 80.62 tumour core, 77.88
enhancing tumour (with region-based training, extra data and postprocessing;
the paper's abstract).

Data: BraTS as the Medical Segmentation Decathlon distributes it (484 labelled
volumes; python -m segjax.data.builders msd_brain_tumour --source
DIR/Task01_BrainTumour), 387 for training and 97 held out (the paper
cross-validates on BraTS 2018's 285 cases and scores the challenge's test set).
Deviations: labels are the MSD classes (edema, non-enhancing, enhancing)
rather than BraTS's overlapping regions, so the validation metric is per-class
Dice, not region Dice; no elastic deformation or gamma augmentation (segjax's
brightness/contrast jitter instead), no postprocessing.

Mesh: a v4-8 (4 chips): batch 2 over data = 2, the other 2 devices on
'model' hold FSDP shards of the state.

    WORKDIR=/mnt/shared/runs/nnn_brats experiments/launch/tpu_pod.sh configs/nonewnet_brats.py
    python -m segjax.main --config configs/nonewnet_brats.py:smoke --workdir /tmp/smoke \\
        --config.data.root=TFDS_DIR
"""

from configs import common

PAPER = common.Paper("Isensee et al. 2018, No New-Net, arXiv:1809.10483",
                     "BraTS 2018 test Dice, whole tumour (TC 80.62, ET 77.88)", 87.81, "abstract",
                     verified="the paper's abstract (arXiv:1809.10483)")


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/nonewnet_brats.py")
    return common.reproduction(
        arg, "configs/nonewnet_brats.py", options=options, dataset="brats", paper=PAPER,
        model=dict(name="nonewnet", num_classes=4), pretrained="", crop=(128, 128, 128),
        batch=2, optimizer=dict(name="adam", learning_rate=1e-4, schedule="constant"),
        steps=30_000,
        augment=dict(hflip=True, vflip=True, dflip=True, scale=(0.85, 1.25),
                     rotate_degrees=15.0, rotate_out_of_plane=True, brightness=0.1,
                     contrast=0.25),
        loss=dict(name="dice_ce"),
        evaluation=dict(tile=(128, 128, 128), overlap=0.5, blend="gaussian", scales=(1.0,),
                        flip=True, batch_size=2),
        slice_name="v4-8",
        smoke_model=dict(name="nonewnet", num_classes=4, width=4, depth=2))
