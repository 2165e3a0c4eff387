"""DeepLab v1 LargeFOV (Chen et al., ICLR 2015, arXiv:1412.7062) on PASCAL VOC 2012.

The paper's setting: VGG-16 (ImageNet) at output stride 8 (atrous conv5,
fc6 as a 3x3 conv of rate 12 with 1024 channels: LargeFOV), trained on the
10,582-image augmented set with 306 x 306 crops (DeepLab's Caffe prototxt),
batch 20, SGD with momentum 0.9, weight decay 5e-4, learning rate 1e-3 (x10
on the classifier) divided by 10 every 2000 iterations, 6000 iterations;
evaluation on whole images at one scale, followed by the fully connected CRF.
Reported: VOC 2012 test mIoU 70.3 for DeepLab-CRF-LargeFOV (71.6 with
multi-scale features), Table 2.

Deviations: segjax has no step schedule; DeepLab v2's poly schedule (power
0.9, which v2 found better) takes its place; no 10x classifier rate; the CRF
uses DeepLab v2's parameters (`eval.crf_params`), not v1's cross-validated
ones.

Mesh: a v4-8 (4 chips), 5 crops per chip.

    WORKDIR=/mnt/shared/runs/dlv1_voc experiments/launch/tpu_pod.sh configs/deeplabv1_voc.py
    python -m segjax.main --config configs/deeplabv1_voc.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Chen et al. 2015, DeepLab v1, arXiv:1412.7062",
                     "VOC 2012 test mIoU (DeepLab-CRF-LargeFOV)", 70.3, "Table 2")


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/deeplabv1_voc.py")
    return common.reproduction(
        arg, "configs/deeplabv1_voc.py", options=options, dataset="voc", paper=PAPER,
        model=dict(name="deeplabv1_largefov", dropout=0.5), pretrained="vgg16",
        crop=(306, 306), batch=20,
        optimizer=dict(name="sgd", learning_rate=1e-3, momentum=0.9, weight_decay=5e-4,
                       schedule="poly", poly_power=0.9),
        steps=6000, augment=dict(hflip=True, scale=(1.0, 1.0)),
        evaluation=dict(tile=(), scales=(1.0,), flip=False, crf=True), slice_name="v4-8",
        smoke_model=dict(name="deeplabv1_largefov"))
