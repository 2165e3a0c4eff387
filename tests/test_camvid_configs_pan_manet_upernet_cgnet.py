"""The CamVid configs of PAN, MAnet, UPerNet and CGNet: data section, variants, the model
builds from each config, and (slow) each smoke variant trains on real CamVid frames."""

import pytest

from tests import test_camvid_configs as camvid
from tests.test_camvid_configs import get_config

CONFIGS = ("pan_camvid", "manet_camvid", "upernet_camvid", "cgnet_camvid")
MODELS = {"pan_camvid": "pan_resnet34", "manet_camvid": "manet_resnet34",
          "upernet_camvid": "upernet_resnet34", "cgnet_camvid": "cgnet"}


@pytest.mark.parametrize("name", CONFIGS)
def test_data_section_and_variants(name):
    config = get_config(name)
    assert config.model.name == MODELS[name] and config.model.num_classes == 11
    assert tuple(config.data.ignore_values) == (11,) and config.data.root.endswith("camvid")
    smoke, cpu = get_config(name, "smoke"), get_config(name, "cpu")
    # PAN's feature pyramid attention needs the 1/16 map at 8x8 or more: 128x128 crops.
    assert smoke.train.steps <= 4 and max(smoke.data.crop) <= (128 if name == "pan_camvid" else 64)
    assert cpu.train.max_minutes > 0 and cpu.data.batch_size <= 4
    with pytest.raises(ValueError, match=rf"configs/{name}.py: unknown argument\(s\) \['smok'\]"):
        get_config(name, "smok")


def test_cgnet_cpu_budget_is_stated():
    cpu = get_config("cgnet_camvid", "cpu")
    assert tuple(cpu.data.crop) == (256, 256) and cpu.data.batch_size == 4
    assert cpu.train.steps == 1000 and cpu.train.eval_every == cpu.train.steps
    assert cpu.train.max_minutes == 120.0
    assert get_config("cgnet_camvid", "smoke,cpu").train.steps == 4  # smoke wins


@pytest.mark.parametrize("name", CONFIGS)
def test_model_builds_from_the_config(name):
    camvid.test_model_builds_from_the_config(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_configs_train_on_camvid(name, camvid_root):
    camvid.forward_backward(name, camvid_root)
