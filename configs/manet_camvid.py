"""MA-Net (Fan et al. 2020) with a ResNet-34 encoder on CamVid (11 classes, void ignored).

segmentation_models_pytorch's `MAnet("resnet34")` (its weights convert one to
one with segjax.convert): ResNet-34 at output stride 32, the position-wise
attention block on the 1/32 map (64 channels; smp's global softmax), four
multi-scale fusion attention blocks and a plain block (256, 128, 64, 32, 16
channels), a 3x3 classifier at full resolution. `model.attention="per_query"`
normalises the attention per query position instead.

    python -m segjax.main --config configs/manet_camvid.py --workdir runs/manet_camvid
    python -m segjax.main --config configs/manet_camvid.py:cpu --workdir runs/manet_camvid_cpu
    python -m segjax.main --config configs/manet_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/manet_camvid.py")
    config.model.name = "manet_resnet34"
    config.model.attention = "smp"
    config.lock()
    return config
