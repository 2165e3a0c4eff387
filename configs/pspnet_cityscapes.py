"""PSPNet (Zhao et al., CVPR 2017, arXiv:1612.01105), ResNet-101, on Cityscapes (fine).

The paper's setting: the dilated deep-stem ResNet-101 (ImageNet) at output
stride 8, the pyramid pooling module, the auxiliary loss (0.4); 713 x 713
crops, batch 16, SGD with momentum 0.9, weight decay 1e-4, learning rate 0.01
with the poly schedule, 90k iterations, random scaling 0.5-2.0, rotation
-10..10 degrees, flips; evaluated with 713 x 713 sliding windows, scales
0.5-1.75 and flips. Reported: Cityscapes test mIoU 78.4 (fine annotations
only), Table 7.

The network is the registered PSPNet's (`pspnet_resnet50`) on ResNet-101,
built from its parts (`segmenter`: resnet101_v1c encoder, pspnet decoder, the
FCN auxiliary head on stride 16).
Deviations: no Gaussian-blur augmentation.

Mesh: a v4-32 (16 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/psp_cs experiments/launch/tpu_pod.sh configs/pspnet_cityscapes.py
    python -m segjax.main --config configs/pspnet_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Zhao et al. 2017, PSPNet, arXiv:1612.01105",
                     "Cityscapes test mIoU (ResNet-101, fine only)", 78.4, "Table 7")
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
DECODER = {"name": "pspnet", "bin_channels": 512, "norm_single_bin": True, "fuse_kernel": 3,
           "dropout": 0.1}


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/pspnet_cityscapes.py")
    return common.reproduction(
        arg, "configs/pspnet_cityscapes.py", options=options, dataset="cityscapes",
        paper=PAPER,
        model=dict(name="segmenter", encoder={"name": "resnet101_v1c", "output_stride": 8},
                   decoder=DECODER, aux_head={"name": "fcn", "channels": 256, "dropout": 0.1},
                   aux_stride=16, align_corners=True),
        pretrained="resnet101_v1c", crop=(713, 713), batch=16,
        optimizer=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
                       schedule="poly", poly_power=0.9),
        steps=90_000, augment=dict(hflip=True, scale=(0.5, 2.0), rotate_degrees=10.0),
        loss=dict(aux_weight=0.4),
        evaluation=dict(tile=(713, 713), overlap=1 / 3, scales=SCALES, flip=True,
                        batch_size=2),
        slice_name="v4-32",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18_v1c", "output_stride": 8},
                         decoder={**DECODER, "bin_channels": 64},
                         aux_head={"name": "fcn", "channels": 32, "dropout": 0.1},
                         aux_stride=16, align_corners=True))
