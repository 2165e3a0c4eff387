"""PAN (Li et al. 2018) with a ResNet-34 encoder on CamVid (11 classes, void ignored).

segmentation_models_pytorch's `PAN("resnet34")` (its weights convert one to one
with segjax.convert): ResNet-34 at output stride 16 (the last stage dilated as
smp dilates it), feature pyramid attention on the 1/16 map, global attention
upsample at 1/16, 1/8 and 1/4 with 32 channels, a 3x3 classifier at 1/4
upsampled x4.

    python -m segjax.main --config configs/pan_camvid.py --workdir runs/pan_camvid
    python -m segjax.main --config configs/pan_camvid.py:cpu --workdir runs/pan_camvid_cpu
    python -m segjax.main --config configs/pan_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py). The smoke crop is
128x128, not 64x64: the feature pyramid attention pools the 1/16 map three
times by 2 and needs it at least 8x8.
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, options = common_camvid.camvid_config(arg, "configs/pan_camvid.py")
    config.model.name = "pan_resnet34"
    config.model.output_stride = 16
    if "smoke" in options:
        config.data.crop = (128, 128)
    config.lock()
    return config
