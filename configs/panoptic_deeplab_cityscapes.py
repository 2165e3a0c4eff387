"""Panoptic-DeepLab (Cheng et al., CVPR 2020, arXiv:1911.10194), ResNet-50, on Cityscapes panoptic.

The paper's setting: the encoder (ImageNet) at output stride 16 with the
dual ASPP / decoders (semantic 256 channels, instance 128) and heads; whole
1025 x 2049 crops, batch 32, Adam with a learning rate of 1e-3 and the poly
schedule, 60k iterations, random scaling 0.5-2.0 and flips; losses:
bootstrapped cross-entropy over the hardest 20% of pixels (instances smaller
than 64 x 64 weighted 3), centre MSE x 200, offset L1 x 0.01 (centre
Gaussians of sigma 8); post-processing with threshold 0.1, NMS 7 x 7, top 200
centres, stuff regions under 2048 pixels void; evaluated on whole images at
one scale. The paper's Cityscapes tables use Xception-71 (val PQ 63.0);
its ResNet-50 reference implementation reports val PQ 59.8 (R50, output
stride 32, batch 8), the number this table quotes.

Data: the 'cityscapes_panoptic' tfds builder (python -m segjax.data.builders
cityscapes_panoptic --source DIR; cityscapesscripts' createPanopticImgs output).

Mesh: a v4-32 (16 chips), 2 crops per chip.

    WORKDIR=/mnt/shared/runs/pd_cs experiments/launch/tpu_pod.sh configs/panoptic_deeplab_cityscapes.py
    python -m segjax.main --config configs/panoptic_deeplab_cityscapes.py:smoke \\
        --workdir /tmp/smoke --config.data.root=TFDS_DIR
"""

from configs import common

PAPER = common.Paper("Cheng et al. 2020, Panoptic-DeepLab, arXiv:1911.10194",
                     "Cityscapes val PQ (ResNet-50, reference implementation)", 59.8,
                     "MODEL_ZOO (R50-os32)",
                     verified="github.com/bowenc0221/panoptic-deeplab MODEL_ZOO.md")
LOSS = dict(name="bootstrapped_cross_entropy+center_mse+offset_l1", weights=(1.0, 200.0, 0.01),
            top_k_percent=0.2)


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/panoptic_deeplab_cityscapes.py")
    return common.reproduction(
        arg, "configs/panoptic_deeplab_cityscapes.py", options=options,
        dataset="cityscapes_panoptic", paper=PAPER,
        model=dict(name="panoptic_deeplab_resnet50", output_stride=16), pretrained="resnet50",
        crop=(1025, 2049), batch=32,
        optimizer=dict(name="adam", learning_rate=1e-3, schedule="poly", poly_power=0.9),
        steps=60_000, augment=dict(hflip=True, scale=(0.5, 2.0)), loss=LOSS,
        evaluation=dict(tile=(), scales=(1.0,), flip=False, batch_size=1), slice_name="v4-32",
        smoke_model=dict(
            name="segmenter", encoder={"name": "resnet18", "output_stride": 16},
            decoder={"name": "panoptic_deeplab", "rates": (6, 12, 18), "aspp_features": 16,
                     "semantic_features": 16, "instance_features": 8,
                     "semantic_low_level_features": (16, 8),
                     "instance_low_level_features": (8, 4), "instance_head_channels": 8},
            head={"name": "panoptic_deeplab", "channels": 16}, align_corners=True))
