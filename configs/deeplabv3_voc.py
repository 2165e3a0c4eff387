"""DeepLabv3 (Chen et al. 2017, arXiv:1706.05587), ResNet-101, on PASCAL VOC 2012.

The paper's setting: ResNet-101 (ImageNet) with multi-grid (1, 2, 4) in the
last block, ASPP (rates 6, 12, 18 at output stride 16) with image pooling,
trained at output stride 16 on the augmented set with 513 x 513 crops, batch
16, SGD with momentum 0.9, weight decay 1e-4, learning rate 0.007 with the poly
schedule (power 0.9), 30k iterations, random scaling 0.5-2.0 and flips, batch
norm trained; evaluated at output stride 8 with scales 0.5-1.75 and flips.
Reported: VOC 2012 val mIoU 79.77 (ASPP, COCO pretraining), Table 6.

Deviations: evaluated at output stride 16 (the model as trained; segjax
builds one model), no COCO pretraining stage.

Mesh: a v4-32 (16 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/dlv3_voc experiments/launch/tpu_pod.sh configs/deeplabv3_voc.py
    python -m segjax.main --config configs/deeplabv3_voc.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Chen et al. 2017, DeepLabv3, arXiv:1706.05587",
                     "VOC 2012 val mIoU (ResNet-101 ASPP, OS 8, MS + flip, COCO)", 79.77,
                     "Table 6")
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/deeplabv3_voc.py")
    return common.reproduction(
        arg, "configs/deeplabv3_voc.py", options=options, dataset="voc", paper=PAPER,
        model=dict(name="deeplabv3_resnet101", output_stride=16, multi_grid=(1, 2, 4)),
        pretrained="resnet101", crop=(513, 513), batch=16,
        optimizer=dict(name="sgd", learning_rate=0.007, momentum=0.9, weight_decay=1e-4,
                       schedule="poly", poly_power=0.9),
        steps=30_000, augment=dict(hflip=True, scale=(0.5, 2.0)),
        evaluation=dict(tile=(), scales=SCALES, flip=True), slice_name="v4-32",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18", "output_stride": 16},
                         decoder={"name": "deeplabv3"}, align_corners=True))
