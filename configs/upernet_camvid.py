"""UPerNet (Xiao et al. 2018) with a ResNet-34 encoder on CamVid (11 classes, void ignored).

segmentation_models_pytorch's `UPerNet("resnet34")` (its weights convert one
to one with segjax.convert): ResNet-34 at output stride 32, LayerNorm on each
feature used (smp's), pyramid pooling (1, 2, 3, 6) on the 1/32 map, an FPN
over 1/16, 1/8, 1/4 and the fusion of all four levels at 1/4 (256 channels),
a 1x1 classifier upsampled x4. `model.feature_norm=False` drops smp's
LayerNorms (the paper's and mmsegmentation's head).

    python -m segjax.main --config configs/upernet_camvid.py --workdir runs/upernet_camvid
    python -m segjax.main --config configs/upernet_camvid.py:cpu --workdir runs/upernet_camvid_cpu
    python -m segjax.main --config configs/upernet_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/upernet_camvid.py")
    config.model.name = "upernet_resnet34"
    config.model.feature_norm = True
    config.lock()
    return config
