"""The paper's LinkNet (Chaurasia & Culurciello 2017, arXiv:1707.03718) on ResNet-18, on CamVid.

`linknet_resnet18`: ResNet-18 encoder, decoder blocks (1x1, 3x3 full-conv,
1x1) added to the inputs of the encoder blocks, and the final block (3x3
full-conv, 3x3 conv, 2x2 full-conv) to the 11 classes at full resolution
(11,534,603 parameters). The paper's CamVid network has a 12th output for
'Unlabeled'; here void (11) is ignored, as in every CamVid config. The
full-convolutions need sizes divisible by 32, so 360x480 frames are evaluated
as one mirror-padded 384x480 tile. The paper's class-weighted loss and its
ImageNet-initialised encoder are not used (see configs/common_camvid.py).

    python -m segjax.main --config configs/linknet_resnet18_camvid.py:cpu --workdir runs/linknet_r18_cpu
    python -m segjax.main --config configs/linknet_resnet18_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/linknet_resnet18_camvid.py")
    config.model.name = "linknet_resnet18"
    config.eval.tile = (384, 480)
    config.lock()
    return config
