"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015, arXiv:1411.4038) on PASCAL VOC 2012.

The paper's setting: VGG-16 (ImageNet) made fully convolutional, the
skip-connected FCN-8s head, Caffe's 100-pixel input padding; whole images
(padded to 500 x 500, VOC's largest side), no augmentation (the paper found
mirroring and jittering gave no gain); SGD with momentum 0.9, a fixed learning
rate of 1e-4, weight decay 5e-4 (batch 20 images); evaluation on whole images
at one scale without flipping. Reported: VOC 2012 test mean IU 62.2 (VOC
2011 test 62.7), Table 3.

Deviations: trained on the 10,582-image train_aug set (the paper used SBD's
8,498 training images), all at once (`at_once`, the PAMI version's recipe)
rather than FCN-32s -> 16s -> 8s stages; the paper gives no iteration count
(it trains to convergence), so 100 epochs of train_aug (53k steps); biases
are not given the paper's doubled learning rate.

Mesh: a v4-8 (4 chips), 5 images per chip.

    WORKDIR=/mnt/shared/runs/fcn8s_voc experiments/launch/tpu_pod.sh configs/fcn8s_voc.py
    python -m segjax.main --config configs/fcn8s_voc.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE    # see configs/common.py
"""

from configs import common

PAPER = common.Paper("Long et al. 2015, FCN, arXiv:1411.4038",
                     "VOC 2012 test mean IU (FCN-8s)", 62.2, "Table 3")


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/fcn8s_voc.py")
    return common.reproduction(
        arg, "configs/fcn8s_voc.py", options=options, dataset="voc", paper=PAPER,
        model=dict(name="fcn8s", at_once=True, caffe_alignment=True, dropout=0.5),
        pretrained="vgg16", crop=(500, 500), batch=20,
        optimizer=dict(name="sgd", learning_rate=1e-4, momentum=0.9, weight_decay=5e-4,
                       schedule="constant"),
        steps=53_000, augment=dict(hflip=False, scale=(1.0, 1.0)),
        evaluation=dict(tile=(), scales=(1.0,), flip=False), slice_name="v4-8",
        smoke_model=dict(name="fcn8s", at_once=True, caffe_alignment=True))
