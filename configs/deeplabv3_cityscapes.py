"""DeepLabv3 (Chen et al. 2017, arXiv:1706.05587), ResNet-101, on Cityscapes (fine).

The paper's setting: the VOC network (ResNet-101, multi-grid (1, 2, 4), ASPP
with image pooling, output stride 16 for training) on the 2,975 fine training
images with 769 x 769 crops, batch 8, SGD with momentum 0.9, weight decay
1e-4, learning rate 0.01 with the poly schedule, 90k iterations, random
scaling 0.5-2.0 and flips; evaluated on whole 1024 x 2048 images at output
stride 8 with scales 0.75-2.0 and flips. Reported: Cityscapes val mIoU 79.3
(train_fine), Table 7 (81.3 on test with the coarse annotations added).

Deviations: evaluated at output stride 16 (the trained model).

Mesh: a v4-16 (8 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/dlv3_cs experiments/launch/tpu_pod.sh configs/deeplabv3_cityscapes.py
    python -m segjax.main --config configs/deeplabv3_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Chen et al. 2017, DeepLabv3, arXiv:1706.05587",
                     "Cityscapes val mIoU (ResNet-101, OS 8, MS + flip)", 79.3, "Table 7")
SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/deeplabv3_cityscapes.py")
    return common.reproduction(
        arg, "configs/deeplabv3_cityscapes.py", options=options, dataset="cityscapes",
        paper=PAPER,
        model=dict(name="deeplabv3_resnet101", output_stride=16, multi_grid=(1, 2, 4)),
        pretrained="resnet101", crop=(769, 769), batch=8,
        optimizer=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
                       schedule="poly", poly_power=0.9),
        steps=90_000, augment=dict(hflip=True, scale=(0.5, 2.0)),
        evaluation=dict(tile=(), scales=SCALES, flip=True, batch_size=1), slice_name="v4-16",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18", "output_stride": 16},
                         decoder={"name": "deeplabv3"}, align_corners=True))
