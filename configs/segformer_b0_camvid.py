"""SegFormer-B0 (Xie et al. 2021, arXiv:2105.15203) on CamVid, from scratch.

MiT-B0 encoder (stochastic depth 0.1) and the all-MLP decoder with 256
channels, the paper's network (`model.style="paper"`; "hf" and "smp" take the
layouts whose weights `segjax.convert` imports). The paper fine-tunes
ImageNet-pretrained encoders with AdamW at 6e-5; from scratch (nothing can be
downloaded here) AdamW at 6e-4 with weight decay 0.01 and the poly schedule
trains it (set `config.model.init_from` to converted MiT weights to fine-tune
instead, at a lower learning rate).

    python -m segjax.main --config configs/segformer_b0_camvid.py --workdir runs/segformer_b0
    python -m segjax.main --config configs/segformer_b0_camvid.py:cpu --workdir runs/sf_b0_cpu
    python -m segjax.main --config configs/segformer_b0_camvid.py:smoke --workdir /tmp/smoke

Fine-tuning from ImageNet (`:finetune`): the MiT-B0 encoder starts from its
ImageNet weights (preset mit_b0.smp_in1k, from the smp hub's pinned
revision), the decoder from random weights, with the paper's AdamW at 6e-5,
weight decay 0.01 and poly decay (the paper's 10x rate for the head is not
applied: one rate for all parameters):

    python -m segjax.main --config configs/segformer_b0_camvid.py:finetune --workdir runs/sf_b0_ft

Arguments: smoke, cpu, sgd, finetune (see configs/common_camvid.py). `:cpu` keeps the
CamVid CPU recipe (256x256 crops, batch 4, validation on the 101 full val
frames at the end) within the wall-clock budget DeepLabv3+ ResNet-50's `:cpu`
run took: SegFormer-B0's step is far cheaper, so the budget holds 6000 steps
(docs/transformers.md has the timings), and `train.max_minutes` = 85 stops
the training in any case, then evaluates.
"""

from configs import common_camvid

CPU_STEPS = 6000


def get_config(arg: str = ""):
    config, options = common_camvid.camvid_config(
        arg, "configs/segformer_b0_camvid.py", learning_rate=6e-4, finetune="mit_b0",
        finetune_optim=dict(name="adamw", learning_rate=6e-5))
    config.model.name = "segformer_b0"
    config.model.style = "paper"
    config.optim.weight_decay = 0.01
    if "cpu" in options and "smoke" not in options:
        config.train.steps = CPU_STEPS
        config.optim.warmup_steps = 300
        config.train.max_minutes = 85.0
        config.train.eval_every = CPU_STEPS
        config.train.checkpoint_every = 500
    config.lock()
    return config
