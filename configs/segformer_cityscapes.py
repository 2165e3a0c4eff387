"""SegFormer-B0..B5 (Xie et al., NeurIPS 2021, arXiv:2105.15203) on Cityscapes (fine).

The paper's setting: the MiT encoder (ImageNet-1k) and the all-MLP decoder;
1024 x 1024 crops, batch 8, AdamW with a learning rate of 6e-5 and weight decay
0.01, the poly schedule with power 1.0 after 1,500 warmup iterations, 160k
iterations, random scaling 0.5-2.0, flips and photometric distortion;
evaluated with 1024 x 1024 sliding windows (stride 768) at one scale.
Reported (Cityscapes val mIoU, single scale, Table 2): B0 76.2, B1 78.5,
B2 81.0, B3 81.7, B4 82.3, B5 82.4.

Arguments: the size (`b0`..`b5`, default `b2`) and `smoke`.
Deviations: one learning rate everywhere (no 10x head); photometric
distortion as brightness/contrast jitter only.

Mesh: a v4-16 (8 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/sf_b2_cs experiments/launch/tpu_pod.sh configs/segformer_cityscapes.py:b2
    python -m segjax.main --config configs/segformer_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

MIOU = {"b0": 76.2, "b1": 78.5, "b2": 81.0, "b3": 81.7, "b4": 82.3, "b5": 82.4}
VARIANTS = tuple(MIOU)


def get_config(arg: str = ""):
    variant, options = common.parse_options(arg, "configs/segformer_cityscapes.py", VARIANTS)
    variant = variant or "b2"
    paper = common.Paper("Xie et al. 2021, SegFormer, arXiv:2105.15203",
                         f"Cityscapes val mIoU (SegFormer-{variant.upper()}, single scale)",
                         MIOU[variant], "Table 2")
    return common.reproduction(
        arg, "configs/segformer_cityscapes.py", options=options, dataset="cityscapes",
        paper=paper, model=dict(name=f"segformer_{variant}", style="paper", drop_path_rate=0.1),
        pretrained=f"mit_{variant}", crop=(1024, 1024), batch=8,
        optimizer=dict(name="adamw", learning_rate=6e-5, weight_decay=0.01, schedule="poly",
                       poly_power=1.0, warmup_steps=1500),
        steps=160_000,
        augment=dict(hflip=True, scale=(0.5, 2.0), brightness=0.125, contrast=0.5),
        evaluation=dict(tile=(1024, 1024), overlap=0.25, scales=(1.0,), flip=False,
                        batch_size=2),
        slice_name="v4-16",
        smoke_model=dict(name="segformer_b0", style="paper", decoder_features=32))
