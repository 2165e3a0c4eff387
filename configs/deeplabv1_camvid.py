"""DeepLab v1 LargeFOV (Chen et al. 2015) on CamVid (11 classes, void ignored).

VGG-16 at output stride 8 (pool4/pool5 3x3 stride 1, conv5 dilation 2), fc6
3x3 with dilation 12 and 1024 channels, fc7 1x1 1024, a 1x1 classifier. The
paper's dense CRF post-processing is not part of this config.

    python -m segjax.main --config configs/deeplabv1_camvid.py --workdir runs/deeplabv1_camvid
    python -m segjax.main --config configs/deeplabv1_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/deeplabv1_camvid.py",
                                            learning_rate=1e-4, sgd_learning_rate=1e-3)
    config.model.name = "deeplabv1_largefov"
    config.model.dropout = 0.5
    config.lock()
    return config
