"""PSPNet (Zhao et al., CVPR 2017, arXiv:1612.01105), ResNet-50, on ADE20K SceneParsing.

The paper's setting: the dilated deep-stem ResNet-50 (ImageNet) at output
stride 8, the pyramid pooling module (bins 1, 2, 3, 6), the auxiliary loss on
the stride-16 features weighted 0.4; 473 x 473 crops, batch 16, SGD with
momentum 0.9, weight decay 1e-4, learning rate 0.01 with the poly schedule
(power 0.9), 150k iterations, random scaling 0.5-2.0, rotation -10..10
degrees, flips (and Gaussian blur); evaluated with scales 0.5-1.75 and flips.
Reported: ADE20K val mIoU 41.68 / pixel accuracy 80.04 for PSPNet(50), Table 3
(multi-scale testing).

Deviations: no Gaussian-blur augmentation (segjax has none); ADE20K images
are evaluated at their own size (the released images have short sides near
512) rather than resized.

Mesh: a v4-32 (16 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/psp_ade experiments/launch/tpu_pod.sh configs/pspnet_ade20k.py
    python -m segjax.main --config configs/pspnet_ade20k.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Zhao et al. 2017, PSPNet, arXiv:1612.01105",
                     "ADE20K val mIoU (PSPNet ResNet-50, MS + flip)", 41.68, "Table 3")
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/pspnet_ade20k.py")
    return common.reproduction(
        arg, "configs/pspnet_ade20k.py", options=options, dataset="ade20k", paper=PAPER,
        model=dict(name="pspnet_resnet50", output_stride=8, aux=True),
        pretrained="resnet50_v1c", crop=(473, 473), batch=16,
        optimizer=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
                       schedule="poly", poly_power=0.9),
        steps=150_000, augment=dict(hflip=True, scale=(0.5, 2.0), rotate_degrees=10.0),
        loss=dict(aux_weight=0.4),
        evaluation=dict(tile=(), scales=SCALES, flip=True, batch_size=1), slice_name="v4-32",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18_v1c", "output_stride": 8},
                         decoder={"name": "pspnet", "bin_channels": 64, "norm_single_bin": True,
                                  "fuse_kernel": 3, "dropout": 0.1},
                         aux_head={"name": "fcn", "channels": 32, "dropout": 0.1},
                         aux_stride=16, align_corners=True))
