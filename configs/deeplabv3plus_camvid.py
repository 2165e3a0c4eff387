"""DeepLabv3+ (Chen et al. 2018) with a ResNet-50 encoder on CamVid.

segmentation_models_pytorch's layout (its weights convert one to one with
segjax.convert): output stride 16, separable ASPP with rates (12, 24, 36) and
image pooling, stride-4 features reduced to 48 channels, a separable 3x3
decoder conv, 1x1 classifier, align-corners bilinear upsampling.
`model.style="paper"` gives DeepLab's own decoder (two 3x3 convs, rates 6/12/18).

    python -m segjax.main --config configs/deeplabv3plus_camvid.py --workdir runs/dlv3p_camvid
    python -m segjax.main --config configs/deeplabv3plus_camvid.py:cpu --workdir runs/dlv3p_cpu
    python -m segjax.main --config configs/deeplabv3plus_camvid.py:smoke --workdir /tmp/smoke

Fine-tuning from ImageNet (`:finetune`): the ResNet-50 encoder starts from
torchvision's ImageNet weights (preset resnet50.tv_in1k, downloaded, verified
and converted on the first run, then read from $SEGJAX_CACHE), the decoder
from random weights, trained with DeepLab's SGD recipe for ImageNet-initialised
backbones (momentum 0.9, lr 0.01, poly decay; one rate for all parameters):

    python -m segjax.main --config configs/deeplabv3plus_camvid.py:finetune --workdir runs/dlv3p_ft

Arguments: smoke, cpu, sgd, finetune (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(
        arg, "configs/deeplabv3plus_camvid.py", finetune="resnet50",
        finetune_optim=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4))
    config.model.name = "deeplabv3plus_resnet50"
    config.model.style = "smp"
    config.model.output_stride = 16
    config.lock()
    return config
