"""CGNet M3N21 (Wu et al. 2018, arXiv:1811.08201) on Cityscapes (fine), from scratch.

The paper's setting: the whole network (Context Guided blocks, 0.5M
parameters) trained from scratch on the 2,975 fine images with 680 x 680
crops, batch 14, Adam with a learning rate of 1e-3 and the poly schedule
(power 0.9), weight decay 5e-4, 60k iterations, random scaling 0.5-2.0 and
flips; evaluated on whole 1024 x 2048 images at one scale. Reported:
Cityscapes test mIoU 64.8 (M3N21), Table 7.

Mesh: a v4-8 (4 chips): batch 14 over data = 2 (7 crops per data group), the
other 2 devices on 'model' hold FSDP shards of the state.

    WORKDIR=/mnt/shared/runs/cgnet_cs experiments/launch/tpu_pod.sh configs/cgnet_cityscapes.py
    python -m segjax.main --config configs/cgnet_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

PAPER = common.Paper("Wu et al. 2018, CGNet, arXiv:1811.08201",
                     "Cityscapes test mIoU (M3N21)", 64.8, "Table 7")


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/cgnet_cityscapes.py")
    return common.reproduction(
        arg, "configs/cgnet_cityscapes.py", options=options, dataset="cityscapes",
        paper=PAPER, model=dict(name="cgnet", stage2_blocks=3, stage3_blocks=21, dropout=0.0),
        pretrained="", crop=(680, 680), batch=14,
        optimizer=dict(name="adam", learning_rate=1e-3, weight_decay=5e-4, schedule="poly",
                       poly_power=0.9),
        steps=60_000, augment=dict(hflip=True, scale=(0.5, 2.0)),
        evaluation=dict(tile=(), scales=(1.0,), flip=False, batch_size=1), slice_name="v4-8",
        smoke_model=dict(name="cgnet", stage2_blocks=2, stage3_blocks=2))
