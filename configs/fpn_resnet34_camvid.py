"""The semantic FPN head (Kirillov et al. 2019) on ResNet-34 in smp's layout on CamVid.

smp's `FPN("resnet34")`: a 256-channel pyramid P2..P5 without output convs,
128-channel conv + GroupNorm + ReLU + x2 bilinear stages summed at stride 4,
channel dropout 0.2, a 1x1 classifier, x4 bilinear upsampling
(align_corners=True). `configs/fpn_resnet50_camvid.py` is the paper's.

    python -m segjax.main --config configs/fpn_resnet34_camvid.py:cpu --workdir runs/fpn_r34_cpu
    python -m segjax.main --config configs/fpn_resnet34_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/fpn_resnet34_camvid.py")
    config.model.name = "fpn_resnet34"
    config.lock()
    return config
