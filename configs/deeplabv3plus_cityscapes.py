"""DeepLabv3+ (Chen et al. 2018, arXiv:1802.02611) on Cityscapes (fine): Xception-65 or ResNet-101.

The paper's setting: the VOC network (encoder at output stride 16, ASPP with
separable convolutions, the stride-4 decoder) on the 2,975 fine training
images with 769 x 769 crops, batch 8, SGD with momentum 0.9, learning rate
0.01 with the poly schedule, 90k iterations, random scaling 0.5-2.0 and
flips; evaluated on whole images at output stride 8 with scales 0.75-2.0 and
flips. Reported: Cityscapes val mIoU 78.79 for Xception-65 with the decoder
(Table 7; 82.1 on test for Xception-71 with the coarse annotations). The
paper reports no ResNet-101 result on Cityscapes (`resnet101` here applies
the same recipe).

Arguments: `xception65` (default) or `resnet101`, and `smoke`.
Deviations: evaluated at output stride 16.

Mesh: a v4-16 (8 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/dlv3p_cs experiments/launch/tpu_pod.sh configs/deeplabv3plus_cityscapes.py
    python -m segjax.main --config configs/deeplabv3plus_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

VARIANTS = {
    "xception65": ("deeplabv3plus_xception65", common.Paper(
        "Chen et al. 2018, DeepLabv3+, arXiv:1802.02611",
        "Cityscapes val mIoU (Xception-65 + decoder, OS 8, MS + flip)", 78.79, "Table 7")),
    "resnet101": ("deeplabv3plus_resnet101", common.Paper(
        "Chen et al. 2018, DeepLabv3+, arXiv:1802.02611",
        "none reported for ResNet-101 on Cityscapes (the paper's recipe, stated)", 0.0, "-")),
}
SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def get_config(arg: str = ""):
    variant, options = common.parse_options(arg, "configs/deeplabv3plus_cityscapes.py",
                                            VARIANTS)
    variant = variant or "xception65"
    name, paper = VARIANTS[variant]
    return common.reproduction(
        arg, "configs/deeplabv3plus_cityscapes.py", options=options, dataset="cityscapes",
        paper=paper, model=dict(name=name, style="paper", output_stride=16),
        pretrained=variant, crop=(769, 769), batch=8,
        optimizer=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=4e-5,
                       schedule="poly", poly_power=0.9),
        steps=90_000, augment=dict(hflip=True, scale=(0.5, 2.0)),
        evaluation=dict(tile=(), scales=SCALES, flip=True, batch_size=1), slice_name="v4-16",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18", "output_stride": 16},
                         decoder={"name": "deeplabv3plus", "rates": (6, 12, 18),
                                  "separable": "tf", "aspp_conv": False, "decoder_convs": 2},
                         align_corners=True))
