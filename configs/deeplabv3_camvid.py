"""DeepLabv3 (Chen et al. 2017): ResNet-50 (multi-grid 1, 2, 4) + ASPP on CamVid.

ASPP rates (6, 12, 18) at output stride 16 (doubled at 8), image pooling,
256 channels, projection dropout 0.5, a 1x1 classifier; bilinear upsampling
of the stride-16 logits to the input.

    python -m segjax.main --config configs/deeplabv3_camvid.py --workdir runs/deeplabv3_camvid
    python -m segjax.main --config configs/deeplabv3_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/deeplabv3_camvid.py")
    config.model.name = "deeplabv3_resnet50"
    config.model.output_stride = 16
    config.model.multi_grid = (1, 2, 4)
    config.loss.aux_weight = 0.0
    config.lock()
    return config
