"""What the paper-reproduction configs share: datasets, pretrained presets, slices, `:smoke`.

A reproduction config (`configs/<model>_<dataset>.py`) writes out the
paper's own setting (crop, batch, optimiser, schedule, steps, output stride,
augmentation, evaluation protocol, pretrained start, reported metric) as
keyword arguments of `reproduction(...)`, so each file reads on its own; this
module only turns them into a locked ConfigDict over `segjax.config`'s schema.

Pretrained starts. `config.model.init_from = "preset:<name>"` names a preset
of the pretrained-weights table; every preset name appears once, in
`PRESETS` below, so a renaming happens here. `segjax.pretrained` resolves
them (download, SHA-256, conversion; `SEGJAX_OFFLINE=1` reads the cache
only) and sets `config.data.mean/std` to the preset's normalisation. The
`:smoke` variant starts from random weights (`init_from` empty).

Slices. `config.reproduction.slice` names the TPU slice a config is meant
for (`SLICES`: JAX devices, HBM per device, bf16 peak); the global batch is
split over the mesh's `data` axis. When the batch is not a multiple of the
slice's devices, `config.mesh` takes data = gcd(batch, devices) and the
other devices on `model`, which holds FSDP storage shards (so they are not
idle for memory, though each data group computes its share redundantly); a
v4 chip is one JAX device (megacore: 2 TensorCores, 2 x 16 GiB HBM).
`experiments/plan.py` checks that a config fits its slice
(docs/reproductions.md has the table). Each config's docstring gives its launch
line, `experiments/launch/tpu_pod.sh` (which also needs TPU_NAME and ZONE; the
workdir is a directory every host sees).

Precision. The pod configs compute in bfloat16 (`model.dtype`; parameters,
optimiser state, softmax and normalisation statistics stay float32), as is
usual on TPUs; the papers trained in float32 on GPUs.

Deviations every config shares (segjax has no such option yet): one
learning rate for all parameters (DeepLab's 10x classifier rate and
SegFormer's 10x head rate are not applied), and evaluation at the trained
output stride (DeepLabv3/v3+ evaluate at output stride 8 after training at
16). Each config's docstring lists its own.

The `:smoke` variant (every config): the same data section on the dataset's
tiny fixture (`tests/data/layouts.py` writes one; set `data.root` to it), a
small model of the same family (`smoke_model`), 64 x 64 crops, global batch 8
(one example per device on 8 simulated CPU devices), 2 steps, evaluation of
one validation image (sliding windows and scales shrunk to 64 x 64 tiles and
one scale), float32, no pretrained start:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m segjax.main \\
        --config configs/segformer_ade20k.py:smoke --workdir /tmp/smoke \\
        --config.data.root=/tmp/ade_fixture
"""

from __future__ import annotations

import dataclasses
import math

from segjax.config import base_config
from segjax.data import datasets, released

# Pretrained starts (segjax.pretrained presets), by encoder. Axial-ResNet has none: its
# ImageNet weights are TensorFlow checkpoints (deeplab2), see segjax.pretrained.UNAVAILABLE.
PRESETS = {
    **{name: f"{name}.tv_in1k" for name in ("vgg16", "resnet18", "resnet34", "resnet50",
                                            "resnet101", "mobilenetv2")},
    "resnet50_v1c": "resnet50_v1c.mmseg_in1k",
    "resnet101_v1c": "resnet101_v1c.mmseg_in1k",
    "xception65": "xception65.tf_in1k",
    **{f"mit_{v}": f"mit_{v}.smp_in1k" for v in ("b0", "b1", "b2", "b3", "b4", "b5")},
    "vit_b16": "dpt_vit_b16.google_in21k_ft_in1k",
    "vit_l16": "dpt_vit_l16.google_in21k_ft_in1k",
    "vit_hybrid": "dpt_vit_hybrid.timm_in21k_ft_in1k",
}


def preset(encoder: str) -> str:
    """`config.model.init_from` for the pretrained `encoder` ("preset:<name>")."""
    if encoder not in PRESETS:
        raise KeyError(f"no pretrained preset for encoder {encoder!r}; known: "
                       f"{', '.join(sorted(PRESETS))}")
    return f"preset:{PRESETS[encoder]}"


@dataclasses.dataclass(frozen=True)
class Slice:
    """A TPU slice as JAX sees it: devices, HBM per device (GiB), bf16 peak per device."""

    devices: int
    hbm_gib: float
    peak_tflops: float


SLICES = {
    "v4-8": Slice(4, 32.0, 275.0),
    "v4-16": Slice(8, 32.0, 275.0),
    "v4-32": Slice(16, 32.0, 275.0),
    "v5e-4": Slice(4, 16.0, 197.0),
    "v5e-8": Slice(8, 16.0, 197.0),
    "v5e-16": Slice(16, 16.0, 197.0),
}


@dataclasses.dataclass(frozen=True)
class Paper:
    """What a paper reports for the setting a config reproduces."""

    citation: str
    metric: str            # e.g. "Cityscapes val mIoU (single scale)"
    value: float           # 0.0: the paper reports none for this setting
    table: str
    verified: str = ""     # where the number was checked here, if it was


# ----------------------------------------------------------------------------- datasets

def _released(name):
    def apply(data):
        released.apply(name, data)
    return apply


def _isbi(data):
    datasets.apply("isbi2012_em", data)


def _cityscapes_panoptic(data):
    """The 'cityscapes_panoptic' tfds builder's records (train-id classes, things 11..18)."""
    data.source, data.tfds_name, data.root = "panoptic_tfds", "cityscapes_panoptic", ""
    data.image_channels = 3
    data.class_names = released.CITYSCAPES.class_names
    data.panoptic.thing_classes = CITYSCAPES_THINGS
    data.label_values, data.ignore_values = (), ()
    data.train_split, data.val_split = "train", "val"
    data.mean, data.std = released.IMAGENET_MEAN, released.IMAGENET_STD


def _brats(data):
    data.source, data.tfds_name, data.root = "tfds_volume", "msd_brain_tumour", ""
    data.image_channels = 4
    data.class_names = ("background", "edema", "non-enhancing tumour", "enhancing tumour")
    data.label_values, data.ignore_values = (), ()
    data.train_split, data.val_split = "train[:387]", "train[387:]"   # 80 / 20 of 484
    data.normalization = "zscore"
    data.volume.zscore_over = "nonzero"


CITYSCAPES_THINGS = tuple(range(11, 19))   # person .. bicycle

DATASETS = {
    # name: (fills config.data, number of classes, smoke fixture writer name)
    "cityscapes": (_released("cityscapes_semantic"), 19, "cityscapes_semantic"),
    "ade20k": (_released("ade20k_sceneparsing"), 150, "ade20k_sceneparsing"),
    "voc": (_released("voc2012_aug"), 21, "voc2012_aug"),
    "coco_stuff": (_released("coco_stuff164k"), 171, "coco_stuff164k"),
    "cityscapes_panoptic": (_cityscapes_panoptic, 19, "cityscapes_panoptic"),
    "brats": (_brats, 4, "msd_brain_tumour"),
    "isbi": (_isbi, 2, "isbi2012_em"),
}


# ----------------------------------------------------------------------------- arguments

def parse_options(arg: str, config_file: str, variants=()) -> tuple[str | None, set[str]]:
    """(the variant named in `arg`, or None; the other options) for 'b2,smoke'-style args."""
    options = set(filter(None, (arg or "").split(",")))
    chosen = options & set(variants)
    unknown = options - set(variants) - {"smoke"}
    if unknown or len(chosen) > 1:
        raise ValueError(f"{config_file}: unknown argument(s) {sorted(unknown or chosen)}; "
                         f"valid: {', '.join([*variants, 'smoke'])} (one variant at most)")
    return (chosen.pop() if chosen else None), options - set(variants)


def mesh_for(config, batch: int, slice_name: str) -> None:
    """config.mesh for `batch` on the slice: data = gcd(batch, devices), the rest on 'model'
    (FSDP storage over 'model', see the module docstring)."""
    devices = SLICES[slice_name].devices
    data = math.gcd(batch, devices)
    config.mesh.data, config.mesh.model = data, devices // data
    if data < devices:
        config.mesh.param_sharding = "fsdp"
        config.mesh.fsdp_axes = ("model",)


# ----------------------------------------------------------------------------- the builder

def reproduction(arg: str, config_file: str, *, dataset: str, model: dict, paper: Paper,
                 pretrained: str, crop, batch: int, optimizer: dict, steps: int,
                 augment: dict, evaluation: dict, slice_name: str, smoke_model: dict,
                 loss: dict | None = None, data: dict | None = None, dtype: str = "bfloat16",
                 options: set[str] = frozenset()):
    """A locked config for the paper's setting (or its `smoke` variant, when in `options`).

    `model`: config.model fields (name, output_stride, ...); `optimizer`: config.optim
    fields; `augment`: config.data.augment fields; `evaluation`: config.eval fields;
    `loss`: config.loss fields; `data`: other config.data fields; `pretrained`: an
    encoder name of PRESETS ('' for none).
    """
    apply_data, num_classes, _ = DATASETS[dataset]
    config = base_config()
    apply_data(config.data)
    config.model.num_classes = num_classes
    for key, value in model.items():
        config.model[key] = value
    config.model.dtype = dtype
    config.model.init_from = preset(pretrained) if pretrained else ""
    config.model.init_from_part = "encoder" if pretrained else "all"

    config.data.crop = tuple(crop)
    config.data.batch_size = int(batch)
    config.data.num_workers = 8
    config.data.prefetch = 4
    config.data.augment.update(augment)
    for key, value in (data or {}).items():
        config.data[key] = value
    for key, value in (loss or {}).items():
        config.loss[key] = value
    config.optim.update(optimizer)
    config.train.steps = int(steps)
    config.train.log_every = 100
    config.train.eval_every = int(steps)
    config.train.checkpoint_every = 2000
    config.train.progress_bar = False
    config.eval.update(evaluation)
    mesh_for(config, int(batch), slice_name)
    config.reproduction.update(dict(paper=paper.citation, metric=paper.metric,
                                    value=float(paper.value), table=paper.table,
                                    verified=paper.verified, dataset=dataset,
                                    slice=slice_name))
    if "smoke" in options:
        smoke(config, dataset, smoke_model)
    config.lock()
    return config


SMOKE_CROP = 64
# The fixture splits the smoke variant trains and evaluates on (tests/data/layouts.py writes
# 2 images per split; ISBI is the real data).
SMOKE_SPLITS = {"cityscapes": ("train", "val[:1]"), "ade20k": ("train", "val[:1]"),
                "voc": ("train_aug", "val[:1]"), "coco_stuff": ("train", "val[:1]"),
                "cityscapes_panoptic": ("train", "val[:1]"), "brats": ("train[:2]", "train[2:3]"),
                "isbi": ("train[:4]", "train[25:26]")}


def smoke(config, dataset: str, smoke_model: dict) -> None:
    """The seconds-long variant (module docstring): fixture-sized, 8 devices, 2 steps."""
    num_classes = int(config.model.num_classes)
    config.model = base_config().model
    config.model.num_classes = num_classes
    for key, value in smoke_model.items():
        config.model[key] = value
    config.model.dtype = "float32"
    config.data.crop = (16, 32, 32) if len(config.data.crop) == 3 else (SMOKE_CROP, SMOKE_CROP)
    config.data.batch_size = 8
    config.data.num_workers = 0
    config.data.prefetch = 2
    config.data.train_split, config.data.val_split = SMOKE_SPLITS[dataset]
    config.optim.warmup_steps = 0
    config.optim.accumulate_steps = 1
    config.train.steps = 2
    config.train.log_every = 1
    config.train.eval_every = 2
    config.train.checkpoint_every = 2
    config.train.max_minutes = 0.0
    config.train.num_overlays = 1
    config.train.remat = "none"
    if config.eval.tile:
        config.eval.tile = tuple(config.data.crop)
    config.eval.scales = (1.0,)
    config.eval.flip = False
    config.eval.crf = False
    config.eval.batch_size = 8
    config.mesh.data, config.mesh.model = -1, 1
    config.mesh.param_sharding = "replicated"
    config.mesh.fsdp_axes = ("data",)


def reproduction_specs(config_dir=None) -> list[str]:
    """'configs/<file>.py[:arg]' of every reproduction config (config.reproduction.paper set)
    and each of its variants (the module's TABLE_ARGS, else the keys of its VARIANTS)."""
    import importlib
    from pathlib import Path

    config_dir = Path(config_dir or Path(__file__).resolve().parent)
    specs = []
    for path in sorted(config_dir.glob("*.py")):
        if path.stem.startswith("common") or path.stem == "__init__":
            continue
        module = importlib.import_module(f"configs.{path.stem}")
        if not module.get_config().reproduction.paper:
            continue
        args = getattr(module, "TABLE_ARGS", None) or tuple(getattr(module, "VARIANTS", ())) \
            or ("",)
        specs += [f"configs/{path.name}" + (f":{arg}" if arg else "") for arg in args]
    return specs
