"""Config for the example paper: a registered encoder, its new decoder, loss and data source.

    python -m segjax.main --config experiments/example_paper/config.py:smoke --workdir /tmp/ex

`config.imports` names the paper's modules (model.py: the decoder, loss.py:
the generalised Dice loss, source.py: the npz data source); nothing in segjax/ names
them. The full config trains on CamVid's folders with generalised Dice +
cross-entropy; `:smoke` trains
on synthetic shapes, and `:npz` (or `:smoke,npz`) reads `.npz` examples from
`data.root`.
"""

from segjax.config import base_config
from segjax.data import datasets


def get_config(arg: str = ""):
    options = set(filter(None, arg.split(",")))
    if options - {"smoke", "npz"}:
        raise ValueError(f"experiments/example_paper/config.py: unknown argument(s) "
                         f"{sorted(options - {'smoke', 'npz'})}; valid: smoke, npz")
    config = base_config()
    config.imports = ("experiments.example_paper.model", "experiments.example_paper.loss",
                      "experiments.example_paper.source")
    config.model.name = "segmenter"
    config.model.encoder = {"name": "resnet18"}
    config.model.decoder = {"name": "example_residual_unet", "width": 16}
    config.model.num_classes = 11
    datasets.apply("camvid", config.data)
    config.data.crop = (352, 480)
    config.loss.name = "generalized_dice+cross_entropy"
    config.loss.gdl_weighting = "square"     # a key the paper adds to the schema
    config.data.batch_size = 4
    if "smoke" in options:
        config.data.source = "synthetic"
        config.data.synthetic.num_classes = 11
        config.data.crop = (64, 64)
        config.data.batch_size = 2
        config.data.train_split = "train"
        config.data.val_split = "val"
        config.train.steps = 2
        config.train.log_every = 1
        config.train.eval_every = 2
        config.train.checkpoint_every = 2
        config.train.progress_bar = False
    if "npz" in options:
        config.data.source = "npz"
        config.data.root = ""                # --config.data.root=DIR
        config.data.dataset = ""
    config.lock()
    return config
