"""DeepLab v2 (Chen et al., TPAMI 2017, arXiv:1606.00915), ResNet-101 ASPP-L, on VOC 2012.

The paper's setting: ResNet-101 (ImageNet) at output stride 8, ASPP-L (four
3x3 branches of rates 6, 12, 18, 24 summed), trained on the 10,582-image
augmented set with 321 x 321 crops, batch 10, SGD with momentum 0.9, weight
decay 5e-4, learning rate 2.5e-4 with the poly schedule (power 0.9), 20k
iterations, random scaling 0.5-1.5 and flips; evaluation on whole images,
followed by the fully connected CRF. Reported: VOC 2012 test mIoU 79.7
(with multi-scale inputs and MS-COCO pretraining), Table 5.

Deviations: no multi-scale-input training (the paper's MSC: shared network
on 1, 0.75, 0.5 scales with max fusion) and no COCO pretraining; no 10x
classifier rate.

Mesh: a v4-8 (4 chips): batch 10 over data = 2, the other 2 devices on
'model' hold FSDP shards of the state.

    WORKDIR=/mnt/shared/runs/dlv2_voc experiments/launch/tpu_pod.sh configs/deeplabv2_voc.py
    python -m segjax.main --config configs/deeplabv2_voc.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Chen et al. 2017, DeepLab v2, arXiv:1606.00915",
                     "VOC 2012 test mIoU (ResNet-101, MSC + COCO + CRF)", 79.7, "Table 5")


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/deeplabv2_voc.py")
    return common.reproduction(
        arg, "configs/deeplabv2_voc.py", options=options, dataset="voc", paper=PAPER,
        model=dict(name="deeplabv2_resnet101", output_stride=8, rates=(6, 12, 18, 24)),
        pretrained="resnet101", crop=(321, 321), batch=10,
        optimizer=dict(name="sgd", learning_rate=2.5e-4, momentum=0.9, weight_decay=5e-4,
                       schedule="poly", poly_power=0.9),
        steps=20_000, augment=dict(hflip=True, scale=(0.5, 1.5)),
        evaluation=dict(tile=(), scales=(1.0,), flip=False, crf=True), slice_name="v4-8",
        smoke_model=dict(name="segmenter", encoder={"name": "resnet18", "output_stride": 8},
                         decoder={"name": "aspp_l", "num_classes": 21,
                                  "rates": (6, 12, 18, 24)},
                         head={"name": "identity"}, align_corners=True))
