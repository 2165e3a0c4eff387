"""UNet++ (Zhou et al. 2018) on ResNet-34 in smp's layout, with deep supervision, on CamVid.

smp's `UnetPlusPlus("resnet34")` (nearest upsampling, decoder widths 256..16,
a 3x3 classifier) plus the paper's deep supervision: a 1x1 classifier on each
top-row node X^{0,1..3} besides the full-depth output, every branch weighted
equally in the loss (`loss.aux_weight` = 1, as the paper trains). The logits
evaluated are the full-depth branch; `experiments/unetpp_pruning.py`
evaluates the same checkpoint pruned to L1..L4.
`--config.model.deep_supervision=False` is smp's model as is.

UNet++ against U-Net on the same encoder, same recipe and budget
(`configs/unet_resnet34_camvid.py`):

    python -m segjax.main --config configs/unetplusplus_resnet34_camvid.py:cpu --workdir runs/unetpp_r34_cpu
    python -m segjax.main --config configs/unet_resnet34_camvid.py:cpu --workdir runs/unet_r34_cpu
    python -m segjax.main --config configs/unetplusplus_resnet34_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/unetplusplus_resnet34_camvid.py")
    config.model.name = "unetplusplus_resnet34"
    config.model.deep_supervision = True
    config.model.combine = "last"
    config.loss.aux_weight = 1.0
    config.lock()
    return config
