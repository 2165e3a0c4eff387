"""U-Net on ResNet-34 in smp's layout (smp `Unet("resnet34")`) on CamVid.

The baseline of the UNet++ comparison (`configs/unetplusplus_resnet34_camvid.py`):
the same encoder, recipe and budget.

    python -m segjax.main --config configs/unet_resnet34_camvid.py:cpu --workdir runs/unet_r34_cpu
    python -m segjax.main --config configs/unet_resnet34_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/unet_resnet34_camvid.py")
    config.model.name = "unet_resnet34"
    config.lock()
    return config
