"""The segmentation_models_pytorch decoders on ResNet-34, on Cityscapes (fine): a stated schedule.

smp's decoders (U-Net, UNet++, LinkNet, FPN, PSPNet, PAN, MA-Net, UPerNet on
an ImageNet ResNet-34, segjax's `<decoder>_resnet34` models, which convert
smp's weights one to one) have no paper result on Cityscapes, so this config
states one schedule for all of them, mmsegmentation's usual Cityscapes one:
512 x 1024 crops, batch 16, SGD with momentum 0.9, weight decay 5e-4,
learning rate 0.01 with the poly schedule (power 0.9), 80k iterations, random
scaling 0.5-2.0 and flips; evaluation on whole 1024 x 2048 images at one
scale. The table reports no paper number for them.

Arguments: the decoder (`unet` (default), `unetplusplus`, `linknet`, `fpn`,
`pspnet`, `pan`, `manet`, `upernet`) and `smoke`.

Mesh: a v4-32 (16 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/fpn_cs experiments/launch/tpu_pod.sh configs/smp_decoders_cityscapes.py:fpn
    python -m segjax.main --config configs/smp_decoders_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

VARIANTS = {name: f"{name}_resnet34" for name in
            ("unet", "unetplusplus", "linknet", "fpn", "pspnet", "pan", "manet", "upernet")}
PAPER = common.Paper("segmentation_models_pytorch decoders (no paper result on Cityscapes)",
                     "none: a stated schedule", 0.0, "-")


def get_config(arg: str = ""):
    variant, options = common.parse_options(arg, "configs/smp_decoders_cityscapes.py",
                                            VARIANTS)
    name = VARIANTS[variant or "unet"]
    return common.reproduction(
        arg, "configs/smp_decoders_cityscapes.py", options=options, dataset="cityscapes",
        paper=PAPER, model=dict(name=name), pretrained="resnet34", crop=(512, 1024),
        batch=16,
        optimizer=dict(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=5e-4,
                       schedule="poly", poly_power=0.9),
        steps=80_000, augment=dict(hflip=True, scale=(0.5, 2.0)),
        evaluation=dict(tile=(), scales=(1.0,), flip=False, batch_size=1), slice_name="v4-32",
        smoke_model=dict(name=name))
