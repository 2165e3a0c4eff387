"""The paper-reproduction configs (configs/common.py): each states its paper, metric, slice and
pretrained start; its `:smoke` variant is small, starts from random weights and reads its
dataset's fixture; smoke variants train 2 steps on 8 simulated devices (one config in the fast
suite, the others marked slow: see docs/reproductions.md for their times)."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import common
from segjax.models import registry

ROOT = Path(__file__).resolve().parent.parent
SPECS = common.reproduction_specs()
FILES = sorted({spec.split(":")[0] for spec in SPECS})


def load(spec: str):
    path, _, arg = spec.partition(":")
    return importlib.import_module(f"configs.{Path(path).stem}").get_config(arg)


def smoke_spec(path: str) -> str:
    return f"{path}:smoke"


def test_every_family_has_a_reproduction_config():
    names = {load(spec).model.name for spec in SPECS}
    for family in ("fcn8s", "deeplabv1_largefov", "deeplabv2_resnet101", "deeplabv3_resnet101",
                   "deeplabv3plus_resnet101", "deeplabv3plus_xception65", "unetplusplus",
                   "pspnet_resnet50", "unet_resnet34", "unetplusplus_resnet34",
                   "linknet_resnet34", "fpn_resnet34", "pspnet_resnet34", "pan_resnet34",
                   "manet_resnet34", "upernet_resnet34", "cgnet", "dpt_hybrid", "dpt_vit_l16",
                   "panoptic_deeplab_resnet50", "axial_deeplab_l_panoptic",
                   "axial_deeplab_xl_panoptic", "axial_deeplab_l", "nonewnet",
                   *(f"segformer_b{i}" for i in range(6))):
        assert family in names, family
    assert len(SPECS) == 41


@pytest.mark.parametrize("spec", SPECS)
def test_config_states_paper_slice_mesh_and_pretrained_start(spec):
    config = load(spec)
    reproduction = config.reproduction
    assert reproduction.paper and reproduction.metric and reproduction.table
    assert reproduction.dataset in common.DATASETS
    assert config.model.num_classes == common.DATASETS[reproduction.dataset][1] or \
        reproduction.dataset == "brats"
    devices = common.SLICES[reproduction.slice].devices
    assert config.mesh.data * config.mesh.model == devices
    assert config.data.batch_size % config.mesh.data == 0
    if config.mesh.model > 1:
        assert config.mesh.param_sharding == "fsdp" and tuple(config.mesh.fsdp_axes) == ("model",)
    if config.model.init_from:
        assert config.model.init_from.removeprefix("preset:") in common.PRESETS.values()
        assert config.model.init_from_part == "encoder"
    assert config.train.steps >= 6000 and config.train.eval_every == config.train.steps
    assert config.model.dtype == "bfloat16" and config.runtime.conv_impl == "auto"
    registry.build(config.model)
    with pytest.raises(AttributeError):
        config.train.stpes = 1


@pytest.mark.parametrize("path", FILES)
def test_smoke_variant_is_small_and_starts_from_random_weights(path):
    full, smoke = load(path), load(smoke_spec(path))
    assert smoke.model.init_from == "" and smoke.model.dtype == "float32"
    assert smoke.data.batch_size == 8 and smoke.train.steps == 2
    assert smoke.mesh.data == -1 and smoke.mesh.model == 1
    assert max(smoke.data.crop) <= 64 and len(smoke.data.crop) == len(full.data.crop)
    assert smoke.eval.scales == (1.0,) and not smoke.eval.flip and not smoke.eval.crf
    assert smoke.reproduction.to_dict() == full.reproduction.to_dict()
    assert (smoke.data.source, tuple(smoke.data.class_names)) == \
        (full.data.source, tuple(full.data.class_names))
    registry.build(smoke.model)


def test_preset_names_are_written_once():
    """Preset names live in configs/common.py's PRESETS only (renamed there)."""
    for path in (ROOT / "configs").glob("*.py"):
        if path.name != "common.py":
            assert not re.search(r"preset:|-imagenet", path.read_text()), path.name
    assert common.preset("resnet101") == "preset:resnet101.tv_in1k"
    from segjax import pretrained
    for name in common.PRESETS.values():   # every start is a preset of segjax.pretrained
        assert pretrained.get(name).part == "encoder", name
    with pytest.raises(KeyError, match="no pretrained preset for encoder 'resnet7'"):
        common.preset("resnet7")


def test_variants_and_unknown_arguments():
    assert load("configs/segformer_ade20k.py:b5").data.crop == (640, 640)
    assert load("configs/segformer_ade20k.py:b5").reproduction.value == 51.0
    assert load("configs/axial_deeplab_cityscapes.py:xl,semantic").model.name == \
        "axial_deeplab_xl"
    assert load("configs/axial_deeplab_cityscapes.py:xl").model.name == \
        "axial_deeplab_xl_panoptic"
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['b9'\]; valid: b0, b1"):
        load("configs/segformer_ade20k.py:b9")
    with pytest.raises(ValueError, match="one variant at most"):
        load("configs/dpt_ade20k.py:hybrid,large")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory):
    """data.root of each dataset's fixture (written once per module)."""
    from tests import reproduction_smoke
    data_dir = tmp_path_factory.mktemp("fixtures")
    return lambda dataset: reproduction_smoke.fixture_root(dataset, data_dir)


@pytest.mark.parametrize("path", [p for p in FILES if "isbi" not in p])
def test_smoke_variant_reads_a_batch_from_its_fixture(path, fixture_roots):
    """The data path of every smoke variant, without compiling: one global batch of 8."""
    from segjax.data import pipeline, sources
    config = load(smoke_spec(path))
    config.unlock()
    config.data.root = fixture_roots(config.reproduction.dataset)
    loader = pipeline.make_train_loader(config.data, seed=0)
    batch = next(loader)
    crop = tuple(config.data.crop)
    assert batch["image"].shape == (8, *crop, config.data.image_channels)
    assert batch["label"].shape == (8, *crop)
    classes = set(np.unique(batch["label"])) - {config.data.ignore_index}
    assert classes and max(classes) < config.model.num_classes
    if config.data.source == "panoptic_tfds":
        assert batch["center"].shape == (8, *crop) and batch["offset"].shape == (8, *crop, 2)
    val = sources.load_split(config.data, config.data.val_split)
    assert len(val) == 1 and val[0]["label"] is not None


# ----------------------------------------------------------------------------- training


def run_smoke(specs, tmp_path, timeout=1800):
    """tests/reproduction_smoke.py on 8 simulated devices; {spec: parsed SMOKE line}."""
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path), "SEGJAX_DATA": str(ROOT.parent / "shared" / "data")}
    import os
    if os.environ.get("SEGJAX_DATA"):
        env["SEGJAX_DATA"] = os.environ["SEGJAX_DATA"]
    result = subprocess.run([sys.executable, "-m", "tests.reproduction_smoke", str(tmp_path),
                             *specs], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    lines = {}
    for line in result.stdout.splitlines():
        if line.startswith("SMOKE "):
            spec, *fields = line.split()[1:]
            lines[spec] = dict(field.split("=", 1) for field in fields)
    assert sorted(lines) == sorted(specs)
    for spec, fields in lines.items():
        assert fields["steps"] == "2", spec
        first, last = (float(v) for v in fields["loss"].split("->"))
        assert np.isfinite(first) and np.isfinite(last), spec
        assert 0.0 <= float(fields["miou"]) <= 1.0, spec
    return lines


# The fast suite trains one config (CGNet: the cheapest compile); the groups below are slow.
FAST = ["configs/cgnet_cityscapes.py:smoke"]
SLOW_GROUPS = {
    "voc": ["configs/fcn8s_voc.py:smoke", "configs/deeplabv1_voc.py:smoke",
            "configs/deeplabv2_voc.py:smoke", "configs/deeplabv3_voc.py:smoke",
            "configs/deeplabv3plus_voc.py:smoke"],
    "cityscapes": ["configs/deeplabv3_cityscapes.py:smoke",
                   "configs/deeplabv3plus_cityscapes.py:smoke",
                   "configs/pspnet_cityscapes.py:smoke", "configs/segformer_cityscapes.py:smoke",
                   "configs/smp_decoders_cityscapes.py:smoke"],
    "ade20k": ["configs/pspnet_ade20k.py:smoke", "configs/segformer_ade20k.py:smoke",
               "configs/dpt_ade20k.py:smoke"],
    "panoptic": ["configs/panoptic_deeplab_cityscapes.py:smoke",
                 "configs/axial_deeplab_cityscapes.py:smoke",
                 "configs/axial_deeplab_cityscapes.py:semantic,smoke"],
    "volumes_and_em": ["configs/nonewnet_brats.py:smoke", "configs/unetplusplus_isbi.py:smoke"],
}


def test_every_config_has_a_smoke_run():
    covered = {spec.split(":")[0] for group in [FAST, *SLOW_GROUPS.values()] for spec in group}
    assert covered == set(FILES)


def test_smoke_trains_on_8_devices(tmp_path):
    run_smoke(FAST, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(SLOW_GROUPS))
def test_smoke_groups_train_on_8_devices(group, tmp_path):
    specs = SLOW_GROUPS[group]
    if any("isbi" in spec for spec in specs):
        from segjax.data import datasets
        import os
        root = Path(os.environ.get("SEGJAX_DATA", ROOT.parent / "shared" / "data"))
        if not (root / "isbi2012_em").is_dir() and not datasets.is_prepared("isbi2012_em", root):
            pytest.skip(f"ISBI 2012 data not found under {root}")
    run_smoke(specs, tmp_path, timeout=3600)
