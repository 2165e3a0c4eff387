"""UNet++ as the paper built it (Zhou et al. 2018, arXiv:1807.10165) on CamVid.

The whole network of the paper: VGG-style nodes (two 3x3 conv + BN + ReLU),
filters 32, 64, 128, 256, 512, 2x2 up-convolutions, a 1x1 classifier on each
branch X^{0,1..4}, deep supervision with every branch weighted equally
(`loss.aux_weight` = 1). Its up-convolutions need sizes divisible by 16, so
360x480 frames are evaluated as one mirror-padded 384x480 tile.

    python -m segjax.main --config configs/unetplusplus_camvid.py:cpu --workdir runs/unetpp_paper_cpu
    python -m segjax.main --config configs/unetplusplus_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/unetplusplus_camvid.py")
    config.model.name = "unetplusplus"
    config.model.deep_supervision = True
    config.loss.aux_weight = 1.0
    config.eval.tile = (384, 480)
    config.lock()
    return config
