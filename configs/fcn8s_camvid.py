"""FCN-8s (Long et al. 2015) on CamVid (11 classes, void ignored).

The reference net: VGG-16 with convolutionalised fc6/fc7, conv1_1 padded by
100 and Caffe's crop offsets, so logits have the input's size for any input.
Trained from scratch here (see configs/common_camvid.py); VGG without batch
norm trains slowly from scratch, so use `model.init_from` with a converted
torchvision vgg16 checkpoint (segjax.convert) where one is available.

    python -m segjax.main --config configs/fcn8s_camvid.py --workdir runs/fcn8s_camvid
    python -m segjax.main --config configs/fcn8s_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py); `atonce` scales
the pool4/pool3 skips by 0.01/0.0001 as voc-fcn8s-atonce.
"""

from configs import common_camvid


def get_config(arg: str = ""):
    options = set(filter(None, (arg or "").split(",")))
    config, _ = common_camvid.camvid_config(",".join(options - {"atonce"}),
                                            "configs/fcn8s_camvid.py", learning_rate=1e-4,
                                            sgd_learning_rate=1e-3)
    config.model.name = "fcn8s"
    config.model.at_once = "atonce" in options
    config.model.dropout = 0.5
    config.data.augment.scale = (0.75, 1.5)
    if "smoke" in options:
        config.data.crop = (32, 32)
    config.lock()
    return config
