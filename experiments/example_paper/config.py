"""Config for the one-file example paper: a registered encoder + the new decoder.

    python -m segjax.main --config experiments/example_paper/config.py:smoke --workdir /tmp/ex
"""

from segjax.config import base_config
from segjax.data import datasets


def get_config(arg: str = ""):
    config = base_config()
    config.imports = ("experiments.example_paper.model",)
    config.model.name = "segmenter"
    config.model.encoder = {"name": "resnet18"}
    config.model.decoder = {"name": "example_residual_unet", "width": 16}
    config.model.num_classes = 11
    datasets.apply("camvid", config.data)
    config.data.crop = (352, 480)
    config.data.batch_size = 4
    if arg == "smoke":
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
    config.lock()
    return config
