"""PSPNet (Zhao et al. 2017) in smp's layout on CamVid: ResNet-34 truncated at stride 8.

smp's `PSPNet("resnet34")`: pyramid pooling (bins 1, 2, 3, 6) on layer2's
128-channel stride-8 feature, a 1x1 fusion conv to 512, dropout 0.2, a 3x3
classifier and x8 bilinear upsampling. `configs/pspnet_resnet50_camvid.py`
is the paper's network.

    python -m segjax.main --config configs/pspnet_resnet34_camvid.py:cpu --workdir runs/pspnet_r34_cpu
    python -m segjax.main --config configs/pspnet_resnet34_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/pspnet_resnet34_camvid.py")
    config.model.name = "pspnet_resnet34"
    config.lock()
    return config
