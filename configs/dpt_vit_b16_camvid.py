"""DPT with a ViT-B/16 encoder (Ranftl et al. 2021, arXiv:2103.13413) on CamVid.

The segmentation DPT of the paper: ViT-B/16 with the "project" readout,
reassembled to 96/192/384/768 channels at strides 4-32, the fusion decoder
with batch norm in its residual units, the 3x3 conv + BN + ReLU + 1x1 head and
the auxiliary head on the fused features (loss weight 0.4). Position
embeddings are kept for a 384x384 input (a 24x24 grid, the published
checkpoints') and resized to the 352x480 crops' 22x30 grid.

A ViT trained from scratch on 367 frames learns little; this recipe is meant to
start from converted weights (`python -m segjax.convert --checkpoint <DPT or
ViT checkpoint> --config configs/dpt_vit_b16_camvid.py --output weights/dpt`,
then `--config.model.init_from=weights/dpt`) and for an accelerator. AdamW at
1e-4 with the poly schedule (the paper's decoder rate).

    python -m segjax.main --config configs/dpt_vit_b16_camvid.py --workdir runs/dpt_b16
    python -m segjax.main --config configs/dpt_vit_b16_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py).
"""

from configs import common_camvid


def get_config(arg: str = ""):
    config, _ = common_camvid.camvid_config(arg, "configs/dpt_vit_b16_camvid.py",
                                            learning_rate=1e-4)
    config.model.name = "dpt_vit_b16"
    config.model.readout = "project"
    config.model.image_size = 384
    config.optim.weight_decay = 0.01
    config.loss.aux_weight = 0.4
    config.lock()
    return config
