"""DeepLab v2 (Chen et al. 2017): ResNet-101 at output stride 8 + ASPP-L on CamVid.

ASPP-L: four 3x3 convolutions with dilation 6, 12, 18, 24 straight to the 11
class scores, summed. The paper's multi-scale inputs and dense CRF are not
part of this config.

    python -m segjax.main --config configs/deeplabv2_camvid.py --workdir runs/deeplabv2_camvid
    python -m segjax.main --config configs/deeplabv2_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, options = common_camvid.camvid_config(arg, "configs/deeplabv2_camvid.py")
    config.model.name = "deeplabv2_resnet101"
    config.model.output_stride = 8
    if "cpu" in options or "smoke" in options:
        config.model.output_stride = 16      # 4x fewer FLOPs in the dilated stages
    config.lock()
    return config
