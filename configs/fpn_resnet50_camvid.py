"""Panoptic FPN's semantic branch (Kirillov et al. 2019) on a ResNet-50 FPN, on CamVid.

The paper's head: FPN output convs on P2..P5, 128-channel conv + GroupNorm +
ReLU + x2 bilinear stages summed at stride 4, no dropout, a 1x1 classifier,
x4 bilinear upsampling (align_corners=False).

    python -m segjax.main --config configs/fpn_resnet50_camvid.py:cpu --workdir runs/fpn_r50_cpu
    python -m segjax.main --config configs/fpn_resnet50_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/fpn_resnet50_camvid.py")
    config.model.name = "fpn_resnet50"
    config.lock()
    return config
