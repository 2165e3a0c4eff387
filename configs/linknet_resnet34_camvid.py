"""LinkNet (Chaurasia & Culurciello 2017) on ResNet-34 in smp's layout on CamVid.

smp's `Linknet("resnet34")`: decoder blocks (1x1, 4x4 stride-2 transposed
conv, 1x1) added to the encoder's skips, a 1x1 classifier. The transposed
convolutions need sizes divisible by 32, so 360x480 frames are evaluated as
one mirror-padded 384x480 tile.

    python -m segjax.main --config configs/linknet_resnet34_camvid.py:cpu --workdir runs/linknet_r34_cpu
    python -m segjax.main --config configs/linknet_resnet34_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/linknet_resnet34_camvid.py")
    config.model.name = "linknet_resnet34"
    config.eval.tile = (384, 480)
    config.lock()
    return config
