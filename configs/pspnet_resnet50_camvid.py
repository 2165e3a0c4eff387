"""PSPNet as the paper built it (Zhao et al. 2017, arXiv:1612.01105) on CamVid.

The deep-stem ResNet-50 dilated to output stride 8, pyramid pooling with BN
in every bin, a 3x3 fusion conv to 512, dropout 0.1, a 1x1 classifier, and
the auxiliary head on the stride-16 feature whose loss is weighted 0.4 as in
the paper (`loss.aux_weight`).

    python -m segjax.main --config configs/pspnet_resnet50_camvid.py:cpu --workdir runs/pspnet_r50_cpu
    python -m segjax.main --config configs/pspnet_resnet50_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/pspnet_resnet50_camvid.py")
    config.model.name = "pspnet_resnet50"
    config.model.output_stride = 8
    config.loss.aux_weight = 0.4
    config.lock()
    return config
