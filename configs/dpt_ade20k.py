"""DPT (Ranftl et al., ICCV 2021, arXiv:2103.13413) on ADE20K SceneParsing: Hybrid or Large.

The paper's setting: DPT-Hybrid (ResNet-50 + ViT-B/16) or DPT-Large
(ViT-L/16), ImageNet-21k pretrained, the convolutional decoder with batch
norm, dropout 0.1 before the classifier and an auxiliary head (weight 0.2);
480 x 480 crops, batch 48, SGD with momentum 0.9 and the poly schedule (power
0.9) from a learning rate of 0.002, 240 epochs (101k iterations of the
20,210 images), random scaling 0.5-2.0 and flips; evaluated at one scale.
Reported: ADE20K val mIoU 49.02 (DPT-Hybrid) and 47.63 (DPT-Large), Table 4.

Arguments: `hybrid` (default) or `large`, and `smoke`.
Deviations: the positional embedding is built for 480 x 480 inputs
(`image_size`), so the pretrained 384 x 384 table is resized when loaded.

Mesh: a v4-32 (16 chips), 3 crops per chip.

    WORKDIR=/mnt/shared/runs/dpt_ade experiments/launch/tpu_pod.sh configs/dpt_ade20k.py:hybrid
    python -m segjax.main --config configs/dpt_ade20k.py:smoke --workdir /tmp/smoke \\
        --config.data.root=FIXTURE
"""

from configs import common

VARIANTS = {
    "hybrid": ("dpt_hybrid", "vit_hybrid", 49.02),
    "large": ("dpt_vit_l16", "vit_l16", 47.63),
}


def get_config(arg: str = ""):
    variant, options = common.parse_options(arg, "configs/dpt_ade20k.py", VARIANTS)
    name, encoder, miou = VARIANTS[variant or "hybrid"]
    paper = common.Paper("Ranftl et al. 2021, DPT, arXiv:2103.13413",
                         f"ADE20K val mIoU ({name})", miou, "Table 4")
    return common.reproduction(
        arg, "configs/dpt_ade20k.py", options=options, dataset="ade20k", paper=paper,
        model=dict(name=name, image_size=480, aux=True, dropout=0.1), pretrained=encoder,
        crop=(480, 480), batch=48,
        optimizer=dict(name="sgd", learning_rate=0.002, momentum=0.9, schedule="poly",
                       poly_power=0.9),
        steps=101_000, augment=dict(hflip=True, scale=(0.5, 2.0)), loss=dict(aux_weight=0.2),
        evaluation=dict(tile=(), scales=(1.0,), flip=False, batch_size=1), slice_name="v4-32",
        smoke_model=dict(name="segmenter",
                         encoder={"name": "mit_b0"}, decoder={"name": "dpt", "features": 16},
                         aux_head={"name": "fcn", "channels": 16}, aux_stride="decoder",
                         align_corners=True))
