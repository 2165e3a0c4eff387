"""The original U-Net (Ronneberger et al. 2015) on ISBI 2012 EM membranes.

The network and inference are the paper's: valid 3x3 convolutions, 572x572
input tiles giving 388x388 logits (a 92-pixel mirrored context), batch 1,
overlap-tile prediction. Slices 0-24 train, 25-29 are held out for validation
(the challenge never released test labels).

The default training recipe is the demo's (`make demo`, 15 minutes on a
2-core CPU) and departs from the paper's, which is `:paper`: no elastic
deformation, no weight map, Adam at 3e-4 with a cosine decay instead of 1e-4
constant, one evaluation at the end, with the horizontally flipped image's
prediction averaged in. In a CPU budget the paper's recipe is slower per step
(the grain worker's elastic warp and weight map compete with the train step
for the cores) and learns less per step (the weight map pushes early
predictions toward membrane); over the paper's hours of GPU training they pay
off. docs/isbi_demo.md has the comparison (`experiments/isbi_recipes.py`).

    python -m segjax.main --config configs/unet_isbi.py --workdir runs/unet_isbi
    python -m segjax.main --config configs/unet_isbi.py:paper --workdir runs/unet_isbi_paper
    python -m segjax.main --config configs/unet_isbi.py:smoke --workdir /tmp/smoke

Arguments after ':' (comma separated): `paper` (the paper's training recipe:
elastic deformation, weight map w0 = 10 and sigma = 5, Adam 1e-4 constant,
evaluation every 100 steps), `smoke` (a seconds-long run on 2 slices at a
small valid tile), `padded` (the same-padding + batch-norm variant),
`binary` (binary segmentation of the membranes: one sigmoid channel, the
membrane mask read from the same label images (raw 0 on, 255 off), binary
cross-entropy + soft Dice, a 0.5 threshold at inference).
"""

from segjax.config import base_config
from segjax.data import datasets


DEMO_STEPS = 320


def apply_paper_recipe(config) -> None:
    """The paper's training recipe: elastic deformation and the border weight map."""
    config.data.augment.elastic_sigma = 10.0
    config.data.augment.elastic_grid = 3
    config.data.weight_map.enabled = True
    config.data.weight_map.w0 = 10.0
    config.data.weight_map.sigma = 5.0
    config.loss.use_weight_map = True
    config.optim.learning_rate = 1e-4
    config.optim.schedule = "constant"
    config.train.steps = 400
    config.train.eval_every = 100
    config.eval.flip = False


def apply_binary_membranes(config) -> None:
    """Membranes as one binary channel: a sigmoid head, channel-stack labels, BCE + Dice."""
    config.model.num_classes = 1
    config.model.head_activation = "sigmoid"
    config.data.label_format = "channels"
    config.data.label_values = (255, 0)      # (raw off, raw on): membrane = raw 0
    config.data.class_names = ("membrane",)
    config.loss.name = "bce+dice"
    if config.data.weight_map.enabled:
        raise ValueError("configs/unet_isbi.py: 'binary' does not combine with 'paper' (the "
                         "weight map separates cells of a class-index label)")


def get_config(arg: str = ""):
    options = set(filter(None, (arg or "").split(",")))
    unknown = options - {"smoke", "padded", "paper", "binary"}
    if unknown:
        raise ValueError(f"configs/unet_isbi.py: unknown argument(s) {sorted(unknown)}; "
                         "valid: smoke, padded, paper, binary")
    config = base_config()

    config.model.name = "unet"
    config.model.num_classes = 2
    config.model.padding = "valid"
    config.model.norm = None
    config.model.width = 64
    config.model.depth = 4

    # Folder source, slices 0-24 train / 25-29 held out, raw 0 = membrane, 255 = interior.
    datasets.apply("isbi2012_em", config.data)
    config.data.crop = (572, 572)
    config.data.pad_margin = 92
    config.data.batch_size = 1
    config.data.num_workers = 1
    config.data.augment.hflip = True
    config.data.augment.vflip = True
    config.data.augment.rot90 = True
    config.data.augment.elastic_sigma = 0.0
    config.data.weight_map.enabled = False

    config.loss.name = "cross_entropy"
    config.loss.use_weight_map = False

    config.optim.name = "adam"
    config.optim.learning_rate = 3e-4
    config.optim.schedule = "cosine"

    # DEMO_STEPS fit the demo's 15 minutes on the 2-core VM (docs/isbi_demo.md); on a
    # slower machine max_minutes plans fewer steps and the cosine still ends (train.budget).
    config.train.steps = DEMO_STEPS
    config.train.max_minutes = 15.0
    config.train.log_every = 10
    config.train.eval_every = DEMO_STEPS
    config.train.checkpoint_every = 50

    config.eval.tile = (572, 572)
    config.eval.batch_size = 1
    config.eval.flip = True             # averages the horizontally flipped prediction in


    if "paper" in options:
        apply_paper_recipe(config)

    if "binary" in options:
        apply_binary_membranes(config)

    if "padded" in options:
        config.model.padding = "same"
        config.model.norm = "batch"
        config.data.pad_margin = 0
        config.data.crop = (256, 256)
        config.data.batch_size = 4
        config.eval.tile = ()

    if "smoke" in options:
        config.model.width = 4
        config.model.depth = 2
        config.data.train_split = "train[:2]"
        config.data.val_split = "train[25:26]"
        config.data.num_workers = 0
        config.data.batch_size = 2
        config.train.steps = 4
        config.train.max_minutes = 0.0
        config.train.log_every = 2
        config.train.eval_every = 4
        config.train.checkpoint_every = 2
        config.train.num_overlays = 1
        config.train.progress_bar = False
        if config.model.padding == "valid":
            config.data.crop = (92, 92)           # depth 2: 92 -> 52 logits, 20-px context
            config.data.pad_margin = 20
            config.eval.tile = (92, 92)
        else:
            config.data.crop = (64, 64)
    config.lock()
    return config
