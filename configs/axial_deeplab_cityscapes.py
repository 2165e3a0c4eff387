"""Axial-DeepLab (Wang et al., ECCV 2020, arXiv:2003.07853) on Cityscapes: panoptic or semantic.

The paper's setting: Axial-DeepLab (the Axial-ResNet encoder, ImageNet, at
output stride 16 with global axial attention; Panoptic-DeepLab's decoders
and heads without ASPP) trained as Panoptic-DeepLab on Cityscapes: whole
1025 x 2049 crops, batch 32, Adam with a learning rate of 1e-3 and the poly
schedule, 60k iterations, random scaling 0.5-2.0 and flips, the same three
losses and post-processing; evaluated on whole images at one scale.
Reported on the Cityscapes test server (fine annotations, ImageNet only):
Axial-DeepLab-XL PQ 62.8 and mIoU 79.9, Axial-DeepLab-L mIoU 79.5.

Arguments: the size (`l`, `xl`; default `l`), `semantic` (the semantic
branch alone, `axial_deeplab_<size>`, trained with the bootstrapped
cross-entropy only; the paper trains the panoptic model, whose semantic
output scores the mIoU quoted), and `smoke`.

Deviation: the paper starts from an ImageNet-pretrained Axial-ResNet; its
weights are TensorFlow checkpoints (deeplab2) that segjax does not convert,
so this config starts from random weights (pass a converted checkpoint with
`--config.model.init_from=PATH`).

Mesh: a v4-32 (16 chips), 2 crops per chip, as the paper's 32 TPU cores. It does not fit
there (experiments/plan.py: 310 GiB per chip for L; 41 GiB with --config.train.remat=blocks
and one crop per chip): docs/reproductions.md says what does.

    WORKDIR=/mnt/shared/runs/axial_xl experiments/launch/tpu_pod.sh configs/axial_deeplab_cityscapes.py:xl
    WORKDIR=/mnt/shared/runs/axial_l_sem experiments/launch/tpu_pod.sh configs/axial_deeplab_cityscapes.py:l,semantic
    python -m segjax.main --config configs/axial_deeplab_cityscapes.py:smoke --workdir /tmp/smoke \\
        --config.data.root=TFDS_DIR
"""

from configs import common

SERVER = "cityscapes-dataset.com method details (submissions 7096, 7098, 7247)"
REPORTED = {  # (size, task): (metric, value)
    ("xl", "panoptic"): ("Cityscapes test PQ (XL, fine)", 62.8),
    ("l", "panoptic"): ("Cityscapes test mIoU (L, fine; the panoptic model's semantic output)",
                        79.5),
    ("xl", "semantic"): ("Cityscapes test mIoU (XL, fine; the panoptic model's)", 79.9),
    ("l", "semantic"): ("Cityscapes test mIoU (L, fine; the panoptic model's)", 79.5),
}
TABLE_ARGS = ("l", "xl", "l,semantic", "xl,semantic")
LOSS = dict(name="bootstrapped_cross_entropy+center_mse+offset_l1", weights=(1.0, 200.0, 0.01),
            top_k_percent=0.2)


def get_config(arg: str = ""):
    options = set(filter(None, (arg or "").split(",")))
    task = "semantic" if "semantic" in options else "panoptic"
    size, options = common.parse_options(",".join(options - {"semantic"}),
                                         "configs/axial_deeplab_cityscapes.py", ("l", "xl"))
    size = size or "l"
    metric, value = REPORTED[size, task]
    paper = common.Paper("Wang et al. 2020, Axial-DeepLab, arXiv:2003.07853", metric, value,
                         "Cityscapes test server", verified=SERVER)
    name = f"axial_deeplab_{size}" + ("_panoptic" if task == "panoptic" else "")
    loss = LOSS if task == "panoptic" else dict(name="bootstrapped_cross_entropy",
                                                top_k_percent=0.2)
    smoke_model = dict(name="axial_deeplab_s" + ("_panoptic" if task == "panoptic" else ""),
                       encoder_options={"width_multiplier": 0.125},
                       decoder_options={"semantic_features": 16, "instance_features": 8,
                                        "aspp_features": 16})
    config = common.reproduction(
        arg, "configs/axial_deeplab_cityscapes.py", options=options,
        dataset="cityscapes_panoptic", paper=paper, model=dict(name=name, num_classes=19),
        pretrained="", crop=(1025, 2049), batch=32,
        optimizer=dict(name="adam", learning_rate=1e-3, schedule="poly", poly_power=0.9),
        steps=60_000, augment=dict(hflip=True, scale=(0.5, 2.0)), loss=loss,
        evaluation=dict(tile=(), scales=(1.0,), flip=False, batch_size=1), slice_name="v4-32",
        smoke_model=smoke_model)
    return config
