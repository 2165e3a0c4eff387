"""The config schema: every section and key a part of segjax reads, with defaults.

`base_config()` returns a ConfigDict that experiment configs
(`configs/<arch>_<data>.py`, or a notebook) fill in. ConfigDicts built here
are locked by their configs, so a key that is not in the schema is an error
on the command line (`--config.train.stpes=1` fails naming `stpes`).
`load(spec)` reads an experiment config file (`path/to/config.py[:arg]`)
without the repository on sys.path.

Sections: model, data, loss, optim, train, eval, mesh, runtime, reproduction, imports.
`validate(config)` checks values that the schema's types cannot (positive
intervals, known names) before a run builds anything.

config.eval is the dataclass `EvalOptions` (test-time options: sliding
window, scales, flip, CRF, panoptic post-processing): `base_config()` builds
the section from its defaults, and the train loop's evaluation,
`segjax.evaluate`, `segjax.predict` and `segjax.export` read it back with
`EvalOptions.from_config(config)`, so the section has one schema.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import ml_collections

from segjax.ops.crf import CRFParams, params_from_config


HEAD_ACTIVATIONS = ("softmax", "sigmoid")
BOUNDARY_METRICS = ("boundary_iou", "boundary_f", "hd95", "nsd")


@dataclasses.dataclass(frozen=True)
class BoundaryOptions:
    """Which boundary metrics to compute and their parameters (config.eval)."""

    metrics: tuple[str, ...] = ()
    dilation_ratio: float = 0.02       # Boundary IoU's band, fraction of the diagonal
    f_tolerance: float = 0.0075        # BF score's match distance, fraction of the diagonal
    nsd_tolerance: float = 1.0         # NSD's tolerance, in units of the spacing (mm)

    def __post_init__(self):
        unknown = sorted(set(self.metrics) - set(BOUNDARY_METRICS))
        if unknown:
            raise ValueError(f"config.eval.metrics: unknown metric(s) {unknown}; valid: "
                             f"{', '.join(BOUNDARY_METRICS)} (mIoU, accuracy, Dice, precision, "
                             "recall, F1 and fw-IoU are always computed)")
        for name in ("dilation_ratio", "f_tolerance", "nsd_tolerance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config.eval.{name}={getattr(self, name)}: expected > 0")

    @classmethod
    def from_config(cls, eval_config) -> "BoundaryOptions":
        fields = dict(eval_config.to_dict() if hasattr(eval_config, "to_dict")
                      else eval_config or {})
        defaults = cls()
        return cls(metrics=tuple(str(m) for m in fields.get("metrics", ())),
                   dilation_ratio=float(fields.get("boundary_iou_dilation",
                                                   defaults.dilation_ratio)),
                   f_tolerance=float(fields.get("boundary_f_tolerance", defaults.f_tolerance)),
                   nsd_tolerance=float(fields.get("nsd_tolerance", defaults.nsd_tolerance)))


@dataclasses.dataclass(frozen=True)
class PanopticOptions:
    """config.eval.panoptic: Panoptic-DeepLab's post-processing (segjax.panoptic.postprocess)."""

    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    stuff_area: int = 2048          # stuff regions smaller than this many pixels become void
    label_divisor: int = 1000       # panoptic id = class * label_divisor + instance


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """config.eval: the test-time options of every evaluation and prediction."""

    tile: tuple[int, ...] = ()      # sliding-window input tile; () = whole image
    overlap: float = 0.0            # fraction of the output tile
    blend: str = "average"          # average | gaussian
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    batch_size: int = 4             # tiles per device call
    crf: bool = False
    # Dense CRF (segjax.ops.crf): DeepLab v2's parameters; normalization "after" | "symmetric".
    crf_params: CRFParams = CRFParams()
    panoptic: PanopticOptions = PanopticOptions()
    # Sigmoid heads: per-class probability thresholds (one per class, or one for all; () = 0.5).
    thresholds: tuple[float, ...] = ()
    # Per-image boundary/surface metrics besides mIoU etc. (segjax.boundary_metrics), opt-in:
    # any of boundary_iou, boundary_f, hd95, nsd. Boundary IoU's band and the BF score's
    # match distance are fractions of the image diagonal; NSD's tolerance is in units of the
    # voxel spacing (the example's, e.g. a NIfTI header's; else 1 per axis).
    metrics: tuple[str, ...] = ()
    boundary_iou_dilation: float = 0.02
    boundary_f_tolerance: float = 0.0075
    nsd_tolerance: float = 1.0
    # Not a config.eval key: the model's config.model.head_activation, which decides whether
    # predictions are class indices (softmax) or per-class masks (sigmoid).
    activation: str = "softmax"

    def __post_init__(self):
        if self.activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"model.head_activation must be one of {HEAD_ACTIVATIONS}, got "
                             f"{self.activation!r}")
        if self.activation == "sigmoid" and self.crf:
            raise ValueError("eval.crf refines a softmax distribution over classes; it does not "
                             "apply to a sigmoid (multi-label) head")

    def class_thresholds(self, num_classes: int):
        """(K,) probability thresholds of a sigmoid head."""
        import numpy as np  # pylint: disable=import-outside-toplevel
        thresholds = np.asarray(self.thresholds or (0.5,), np.float32)
        if thresholds.size not in (1, num_classes):
            raise ValueError(f"eval.thresholds={self.thresholds}: expected one value or one per "
                             f"class ({num_classes})")
        return np.broadcast_to(thresholds, (num_classes,))

    @classmethod
    def from_config(cls, config) -> "EvalOptions":
        """The options of `config.eval`; keys it lacks keep their defaults, unknown keys are an
        error naming them."""
        section = (config.get("eval") if config is not None else None) or {}
        fields = dict(section.to_dict() if hasattr(section, "to_dict") else section)
        known = {field.name for field in dataclasses.fields(cls)} - {"activation"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"config.eval has unknown key(s) {unknown}; valid: {sorted(known)}")
        default = cls()
        panoptic = dict(fields.get("panoptic") or {})
        panoptic_known = {field.name for field in dataclasses.fields(PanopticOptions)}
        if set(panoptic) - panoptic_known:
            raise ValueError(f"config.eval.panoptic has unknown key(s) "
                             f"{sorted(set(panoptic) - panoptic_known)}; valid: "
                             f"{sorted(panoptic_known)}")
        return cls(tile=tuple(int(t) for t in fields.get("tile", default.tile)),
                   overlap=float(fields.get("overlap", default.overlap)),
                   blend=str(fields.get("blend", default.blend)),
                   scales=tuple(float(s) for s in fields.get("scales", default.scales)),
                   flip=bool(fields.get("flip", default.flip)),
                   batch_size=int(fields.get("batch_size", default.batch_size)),
                   crf=bool(fields.get("crf", default.crf)),
                   crf_params=params_from_config(fields.get("crf_params")),
                   panoptic=PanopticOptions(**panoptic),
                   thresholds=tuple(float(t) for t in fields.get("thresholds", ())),
                   metrics=tuple(str(m) for m in fields.get("metrics", ())),
                   boundary_iou_dilation=float(fields.get("boundary_iou_dilation",
                                                          default.boundary_iou_dilation)),
                   boundary_f_tolerance=float(fields.get("boundary_f_tolerance",
                                                         default.boundary_f_tolerance)),
                   nsd_tolerance=float(fields.get("nsd_tolerance", default.nsd_tolerance)),
                   activation=str(_head_activation(config)))

    def to_config(self) -> ml_collections.ConfigDict:
        """The options as a config.eval section."""
        fields = dataclasses.asdict(self)
        del fields["activation"]
        return ml_collections.ConfigDict(fields)


def _head_activation(config) -> str:
    model = (config.get("model") if config is not None else None) or {}
    return model.get("head_activation") or "softmax"


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.model = ml_collections.ConfigDict()
    config.model.name = ""
    config.model.num_classes = 2
    # Mixed precision (segjax.models.policy): the compute dtype, float32 or bfloat16.
    # Parameters and optimiser state stay float32; the loss, softmax and
    # normalisation statistics are computed in float32 whatever this says.
    config.model.dtype = "float32"
    # softmax: one class per pixel (class-index labels); sigmoid: K independent channels
    # (multi-label / binary; channel-stack labels, data.label_format = "channels").
    config.model.head_activation = "softmax"
    config.model.init_from = ""              # checkpoint (or workdir) to start training from
    config.model.init_from_part = "all"      # all | encoder (re-initialises the rest)

    config.data = ml_collections.ConfigDict()
    config.data.source = "folder"            # a registered source: folder | tfds | synthetic
    config.data.root = ""                    # folder root / tfds data_dir
    config.data.dataset = ""                 # a known dataset (segjax.data.datasets): fetched
    config.data.download_url = ""            # into a missing root from its public location
    config.data.tfds_name = ""               # tfds builder name for source=tfds
    config.data.train_split = "train"        # 'train', 'train[:25]', 'train[25:30]'
    config.data.val_split = "val"
    config.data.split_lists = ""             # JSON {split: [paths under root]} (folder source)
    config.data.image_channels = 3
    config.data.label_values = ()           # raw value of class i at position i; () = identity
    config.data.ignore_values = ()           # raw label values mapped to ignore_index
    config.data.ignore_index = 255           # class-space label that the loss/metrics skip
    # index: a label image of class indices; channels: a stack of K binary masks per image
    # (multi-page TIFF, multi-channel PNG/TIFF or .npy (H, W, K); one channel for binary),
    # each channel's raw values mapped by label_values (raw off, raw on) / ignore_values.
    config.data.label_format = "index"
    config.data.class_names = ()
    config.data.crop = (512, 512)            # training crop of the (padded) input
    config.data.pad_margin = 0               # mirrored context around labels (valid convs)
    config.data.mean = (0.5,)
    config.data.std = (0.5,)
    config.data.batch_size = 8               # global batch over all processes
    config.data.num_workers = 0              # grain worker processes (0: in-process)
    config.data.prefetch = 2
    config.data.augment = ml_collections.ConfigDict(dict(
        hflip=True, vflip=False, rot90=False, scale=(1.0, 1.0), rotate_degrees=0.0,
        elastic_sigma=0.0,                   # U-Net paper: 10 (pixels, on a 3x3 grid)
        elastic_grid=3, brightness=0.0, contrast=0.0,
        dflip=False,                         # volumes: flip the depth axis too
        rotate_out_of_plane=False))          # volumes: rotate (D, W) and (D, H) planes too
    config.data.normalization = "fixed"      # fixed: (x / 255 - mean) / std | zscore: per volume
    # Volumes (segjax.data.volume_sources, volume_patches, normalization): z-score mask,
    # patch sampling, stack spacing.
    config.data.volume = ml_collections.ConfigDict(dict(
        zscore_over="nonzero",               # nonzero (BraTS: the brain) | all voxels
        foreground_fraction=0.33,            # patches centred on a foreground voxel (nnU-Net)
        spacing=()))                         # voxel spacing of slice stacks; () = 1 per axis
    config.data.weight_map = ml_collections.ConfigDict(dict(enabled=False, w0=10.0, sigma=5.0,
                                                            balance=True))
    config.data.synthetic = ml_collections.ConfigDict(dict(num_examples=16, height=64,
                                                           width=64, num_classes=2))
    # Panoptic data (segjax.data.panoptic): thing classes (all others are stuff) and
    # Panoptic-DeepLab's targets: centre Gaussians' sigma, small instances' loss weight.
    config.data.panoptic = ml_collections.ConfigDict(dict(
        thing_classes=(), sigma=8.0, small_instance_area=4096, small_instance_weight=3.0))

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "cross_entropy"       # registered terms joined by '+': cross_entropy+dice
    config.loss.weights = ()                 # one weight per term of name; () = all 1
    config.loss.class_weights = ()           # one weight per class, () for none
    config.loss.use_weight_map = False       # multiply by the batch's 'weight' map
    config.loss.aux_weight = 0.4             # for models returning aux_logits
    config.loss.label_smoothing = 0.0
    config.loss.top_k_percent = 0.2          # bootstrapped_cross_entropy: hardest pixels kept
    # The soft Dice term ('dice', 'dice_ce'): No New-Net's is batch=True, every class, smooth 0.
    config.loss.dice = ml_collections.ConfigDict(dict(smooth=1.0, batch=True,
                                                      include_background=True))
    # Options of the other registered terms (segjax.losses): 'jaccard'; 'tversky' and
    # 'focal_tversky' (alpha weighs false positives, beta false negatives, gamma the focal
    # exponent); 'focal' (alpha >= 0: sigmoid form's weight of positives, Lin et al. 0.25;
    # < 0: none); 'lovasz_softmax'/'lovasz_hinge'; 'ohem_cross_entropy' (HRNet's threshold
    # and minimum kept); 'boundary' (Kervadec et al.; spacing () = 1 per axis).
    config.loss.jaccard = ml_collections.ConfigDict(dict(smooth=1.0, batch=True,
                                                         include_background=True))
    config.loss.tversky = ml_collections.ConfigDict(dict(
        alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0, batch=True, include_background=True))
    config.loss.focal = ml_collections.ConfigDict(dict(gamma=2.0, alpha=-1.0))
    config.loss.lovasz = ml_collections.ConfigDict(dict(per_image=False, classes="present"))
    config.loss.ohem = ml_collections.ConfigDict(dict(threshold=0.7, min_kept=100_000))
    config.loss.boundary = ml_collections.ConfigDict(dict(include_background=False,
                                                          spacing=()))

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"               # a registered optimizer: adam | adamw | sgd
    config.optim.learning_rate = 1e-3
    config.optim.schedule = "constant"       # constant | poly | cosine
    config.optim.warmup_steps = 0
    config.optim.poly_power = 0.9
    config.optim.end_learning_rate = 0.0
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.weight_decay = 0.0
    config.optim.grad_clip_norm = 0.0        # 0 disables
    config.optim.accumulate_steps = 1        # optax.MultiSteps when > 1

    config.train = ml_collections.ConfigDict()
    config.train.steps = 1000
    config.train.seed = 0
    config.train.log_every = 10
    config.train.eval_every = 200
    config.train.checkpoint_every = 200
    config.train.keep_checkpoints = 2
    config.train.max_minutes = 0.0           # wall-clock budget for training (0: none)
    config.train.allow_config_change = False  # resume although config.model/optim changed
    # Train from step 0 in a workdir whose checkpoints were all unreadable (moved to
    # checkpoints_corrupt/); refused without it. The old metrics.jsonl is kept beside.
    config.train.start_over = False
    config.train.progress_bar = True
    # Rematerialisation (segjax.models.policy): which modules the train step
    # recomputes in the backward pass instead of storing their activations:
    # none | blocks (each composite module of the encoder, decoder and head, e.g. a
    # ResNet bottleneck) | "re:<regex matching whole module paths, e.g. encoder/layer4_\d+>".
    config.train.remat = "none"
    config.train.remat_policy = "nothing"    # what a rematerialised module keeps: nothing |
                                             # conv_outputs | dots (matmul outputs)
    config.train.num_overlays = 4            # PNG overlays of validation predictions

    config.eval = EvalOptions().to_config()   # test-time options: see EvalOptions

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1                    # -1: all devices on the batch axis
    config.mesh.model = 1
    # Where the train state lives (segjax.sharding): replicated on every device, or
    # fsdp: each leaf of >= fsdp_min_size elements split over fsdp_axes (gathered in
    # the step). param_rules: ((regex over leaf paths, spec), ...), first match wins;
    # spec: a tuple of mesh axes/None per array axis, "fsdp" or "replicated".
    config.mesh.param_sharding = "replicated"
    config.mesh.param_rules = ()
    config.mesh.fsdp_axes = ("data",)
    config.mesh.fsdp_min_size = 4096

    config.runtime = ml_collections.ConfigDict()
    config.runtime.conv_impl = "auto"        # segjax.ops.conv formulation: auto | native | cpu
    config.runtime.prng_impl = "rbg"         # PRNG of segjax's own keys (init, dropout)
    config.runtime.trim_host_memory = True   # return the compiler's freed heap to the OS
    # Persistent XLA compilation cache: "auto" (JAX's own setting if one is made, else
    # ~/.cache/segjax/jax_compilation_cache), a directory, or "" (none).
    config.runtime.compilation_cache_dir = "auto"

    # What an experiment config reproduces (configs/common.py, experiments/plan.py): the
    # paper, its reported metric and table, the dataset (configs/common.py's name) and the
    # accelerator slice the config is meant for.
    config.reproduction = ml_collections.ConfigDict(dict(
        paper="", metric="", value=0.0, table="", verified="", dataset="", slice=""))

    config.imports = ()
    return config



def load(spec: str) -> ml_collections.ConfigDict:
    """`path/to/config.py[:arg]` -> the ConfigDict its `get_config(arg)` returns."""
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config: no config file at {file}")
    # Experiment files may import their siblings (`from configs import common_camvid`).
    root = str(file.resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"_segjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {file} defines no get_config(arg)")
    return module.get_config(arg) if arg else module.get_config()


POSITIVE_INTEGERS = ("train.steps", "train.log_every", "train.eval_every",
                     "train.checkpoint_every", "train.keep_checkpoints", "data.batch_size",
                     "eval.batch_size", "optim.accumulate_steps", "model.num_classes")
NON_NEGATIVE = ("train.max_minutes", "data.num_workers", "data.pad_margin",
                "optim.learning_rate", "optim.weight_decay", "optim.grad_clip_norm",
                "optim.warmup_steps", "mesh.fsdp_min_size")
CHOICES = {"model.dtype": ("float32", "bfloat16"),
           "model.head_activation": ("softmax", "sigmoid"),
           "data.label_format": ("index", "channels"),
           "mesh.param_sharding": ("replicated", "fsdp"),
           "train.remat_policy": ("nothing", "conv_outputs", "dots")}
REMAT_LEVELS = ("none", "blocks")


def _value(config, dotted: str):
    value = config
    for key in dotted.split("."):
        if key not in value:
            return None
        value = value[key]
    return value


class ConfigError(ValueError):
    """A config value out of its range; the message names the key."""


def validate(config) -> None:
    """Raises a ConfigError naming the key for a count or interval out of its range."""
    for key in POSITIVE_INTEGERS:
        value = _value(config, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value <= 0):
            raise ConfigError(f"config.{key}={value!r}: expected a positive integer")
    for key in NON_NEGATIVE:
        value = _value(config, key)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"config.{key}={value!r}: expected a finite number >= 0")
    for key, choices in CHOICES.items():
        value = _value(config, key)
        if value is not None and value not in choices:
            raise ConfigError(f"config.{key}={value!r}: expected one of {', '.join(choices)}")
    remat = _value(config, "train.remat")
    if remat is not None:
        remat_levels(remat)
    _validate_label_mode(config)
    crop = _value(config, "data.crop")
    if crop is not None and (len(crop) == 0 or any(int(size) <= 0 for size in crop)):
        raise ConfigError(f"config.data.crop={tuple(crop)!r}: expected positive sizes")


def _validate_label_mode(config) -> None:
    """head_activation and label_format agree; thresholds fit the classes; metric names."""
    activation = _value(config, "model.head_activation")
    label_format = _value(config, "data.label_format")
    if activation is not None and label_format is not None and (
            (activation == "sigmoid") != (label_format == "channels")):
        raise ConfigError(
            f"config.model.head_activation={activation!r} with config.data.label_format="
            f"{label_format!r}: a sigmoid head trains on channel masks (label_format="
            "'channels'), a softmax head on class indices ('index')")
    thresholds = _value(config, "eval.thresholds")
    classes = _value(config, "model.num_classes")
    if thresholds:
        if len(thresholds) not in (1, classes) or not all(0 < t < 1 for t in thresholds):
            raise ConfigError(f"config.eval.thresholds={tuple(thresholds)}: expected one "
                              f"probability in (0, 1), or one per class ({classes})")
        if activation != "sigmoid":
            raise ConfigError("config.eval.thresholds apply to sigmoid heads "
                              "(config.model.head_activation='sigmoid')")
    metric_names = _value(config, "eval.metrics")
    if metric_names:
        try:
            BoundaryOptions.from_config(config.eval)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def remat_levels(remat: str) -> tuple[str, ...]:
    """config.train.remat as a tuple of selections (('blocks',) or ('re:<regex>',)); () for none."""
    import re
    if not isinstance(remat, str):
        raise ConfigError(f"config.train.remat={remat!r}: expected a string")
    if remat.startswith("re:"):
        try:
            re.compile(remat[3:])
        except re.error as error:
            raise ConfigError(f"config.train.remat={remat!r}: bad regular expression "
                              f"({error})") from None
        return (remat,)
    if remat not in REMAT_LEVELS:
        raise ConfigError(f"config.train.remat={remat!r}: expected none, blocks or "
                          "'re:<regex matching whole module paths>'")
    return () if remat == "none" else (remat,)
