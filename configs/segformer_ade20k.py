"""SegFormer-B0..B5 (Xie et al., NeurIPS 2021, arXiv:2105.15203) on ADE20K SceneParsing.

The paper's setting: the MiT encoder (ImageNet-1k) and the all-MLP decoder
(256 channels for B0/B1, 768 otherwise), stochastic depth 0.1; 512 x 512 crops
(640 x 640 for B5), batch 16, AdamW with a learning rate of 6e-5 and weight
decay 0.01, the poly schedule with power 1.0 after 1,500 warmup iterations,
160k iterations, random scaling 0.5-2.0, flips and photometric distortion;
evaluated at one scale on images resized to a short side of 512 (640 for B5).
Reported (ADE20K val mIoU, single scale, Table 2): B0 37.4, B1 42.2, B2 46.5,
B3 49.4, B4 50.3, B5 51.0.

Arguments: the size (`b0`..`b5`, default `b2`) and `smoke`.
Deviations: one learning rate everywhere (the paper's head runs at 10x);
photometric distortion as segjax's brightness/contrast jitter only; images
evaluated at their own size (ADE20K's short sides are near 512).

Mesh: a v4-32 (16 chips), one crop per chip.

    WORKDIR=/mnt/shared/runs/sf_b2_ade experiments/launch/tpu_pod.sh configs/segformer_ade20k.py:b2
    python -m segjax.main --config configs/segformer_ade20k.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

MIOU = {"b0": 37.4, "b1": 42.2, "b2": 46.5, "b3": 49.4, "b4": 50.3, "b5": 51.0}
VARIANTS = tuple(MIOU)


def get_config(arg: str = ""):
    variant, options = common.parse_options(arg, "configs/segformer_ade20k.py", VARIANTS)
    variant = variant or "b2"
    crop = (640, 640) if variant == "b5" else (512, 512)
    paper = common.Paper("Xie et al. 2021, SegFormer, arXiv:2105.15203",
                         f"ADE20K val mIoU (SegFormer-{variant.upper()}, single scale)",
                         MIOU[variant], "Table 2")
    return common.reproduction(
        arg, "configs/segformer_ade20k.py", options=options, dataset="ade20k", paper=paper,
        model=dict(name=f"segformer_{variant}", style="paper", drop_path_rate=0.1),
        pretrained=f"mit_{variant}", crop=crop, batch=16,
        optimizer=dict(name="adamw", learning_rate=6e-5, weight_decay=0.01, schedule="poly",
                       poly_power=1.0, warmup_steps=1500),
        steps=160_000,
        augment=dict(hflip=True, scale=(0.5, 2.0), brightness=0.125, contrast=0.5),
        evaluation=dict(tile=(), scales=(1.0,), flip=False, batch_size=1), slice_name="v4-32",
        smoke_model=dict(name="segformer_b0", style="paper", decoder_features=32))
