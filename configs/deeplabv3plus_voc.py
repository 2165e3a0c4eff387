"""DeepLabv3+ (Chen et al. 2018, arXiv:1802.02611) on PASCAL VOC 2012: Xception-65 or ResNet-101.

The paper's setting: the encoder (ImageNet) at output stride 16, ASPP (rates
6, 12, 18) with image pooling and separable convolutions, the decoder on the
stride-4 features (48 channels) with two 3x3 separable convolutions; trained on
the augmented set with 513 x 513 crops, batch 16, SGD with momentum 0.9,
weight decay 4e-5, learning rate 0.007 with the poly schedule, 30k iterations,
random scaling 0.5-2.0 and flips; evaluated at output stride 8 with scales
0.5-1.75 and flips. Reported (VOC 2012 val mIoU, eval OS 8 + MS + flip):
Xception-65 84.56 with COCO pretraining (Table 5), ResNet-101 80.57 (Table 3).

Arguments: `xception65` (default) or `resnet101`, and `smoke`.
Deviations: evaluated at output stride 16; no COCO / JFT pretraining.

Mesh: a v4-32 (16 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/dlv3p_voc experiments/launch/tpu_pod.sh configs/deeplabv3plus_voc.py:xception65
    python -m segjax.main --config configs/deeplabv3plus_voc.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

VARIANTS = {
    "xception65": ("deeplabv3plus_xception65", common.Paper(
        "Chen et al. 2018, DeepLabv3+, arXiv:1802.02611",
        "VOC 2012 val mIoU (Xception-65, OS 8, MS + flip, COCO)", 84.56, "Table 5")),
    "resnet101": ("deeplabv3plus_resnet101", common.Paper(
        "Chen et al. 2018, DeepLabv3+, arXiv:1802.02611",
        "VOC 2012 val mIoU (ResNet-101, OS 8, MS + flip)", 80.57, "Table 3")),
}
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def get_config(arg: str = ""):
    variant, options = common.parse_options(arg, "configs/deeplabv3plus_voc.py", VARIANTS)
    variant = variant or "xception65"
    name, paper = VARIANTS[variant]
    return common.reproduction(
        arg, "configs/deeplabv3plus_voc.py", options=options, dataset="voc", paper=paper,
        model=dict(name=name, style="paper", output_stride=16), pretrained=variant,
        crop=(513, 513), batch=16,
        optimizer=dict(name="sgd", learning_rate=0.007, momentum=0.9, weight_decay=4e-5,
                       schedule="poly", poly_power=0.9),
        steps=30_000, augment=dict(hflip=True, scale=(0.5, 2.0)),
        evaluation=dict(tile=(), scales=SCALES, flip=True), slice_name="v4-32",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18", "output_stride": 16},
                         decoder={"name": "deeplabv3plus", "rates": (6, 12, 18),
                                  "separable": "tf", "aspp_conv": False, "decoder_convs": 2},
                         align_corners=True))
