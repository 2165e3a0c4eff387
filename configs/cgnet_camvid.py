"""CGNet M3N21 (Wu et al. 2018, arXiv:1811.08201) on CamVid (11 classes, void ignored).

The paper's network (0.5M parameters, trained from scratch as in the paper):
Context Guided blocks, input injection at 1/2 and 1/4, a 1x1 classifier at
1/8 upsampled x8. The recipe is the CamVid configs' common one (AdamW, lr
1e-3 with poly decay, random scaling 0.5-2 and flips), so the result compares
with the other models trained by it.

    python -m segjax.main --config configs/cgnet_camvid.py --workdir runs/cgnet_camvid
    python -m segjax.main --config configs/cgnet_camvid.py:cpu --workdir runs/cgnet_camvid_cpu
    python -m segjax.main --config configs/cgnet_camvid.py:smoke --workdir /tmp/smoke

Arguments: smoke, cpu, sgd (see configs/common_camvid.py). `cpu` here is
the wall-clock budget of DeepLabv3+ ResNet-50's `:cpu` run (360 steps)
spent on CGNet: the same 256x256 crops, batch 4 and optimiser, and as many
CGNet steps as fit that time (docs/decoders_pan_manet_upernet_cgnet.md has
the timings). `train.max_minutes` = 120 stops it in any case, as the other
`:cpu` runs.
"""

from configs import common_camvid

# 360 DeepLabv3+ ResNet-50 steps times the ratio of the two train steps' wall time
# (docs/decoders_pan_manet_upernet_cgnet.md).
CGNET_CPU_STEPS = 1000


def get_config(arg: str = ""):
    config, options = common_camvid.camvid_config(arg, "configs/cgnet_camvid.py")
    config.model.name = "cgnet"
    config.model.dropout = 0.0
    if "cpu" in options and "smoke" not in options:
        config.train.steps = CGNET_CPU_STEPS
        config.train.eval_every = CGNET_CPU_STEPS
        config.train.checkpoint_every = 100
        config.optim.warmup_steps = 80
    config.lock()
    return config
