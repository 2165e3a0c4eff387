"""The SegFormer-B0 and DPT ViT-B/16 CamVid configs: data section, variants, the model they
build, and (slow) a forward + backward of the smoke variant on real CamVid frames."""

import jax
import jax.numpy as jnp
import pytest

from segjax.models import build
from tests.test_camvid_configs import forward_backward, get_config

CONFIGS = ("segformer_b0_camvid", "dpt_vit_b16_camvid")


@pytest.mark.parametrize("name", CONFIGS)
def test_data_section_and_variants(name):
    config = get_config(name)
    assert (config.data.source, config.data.train_split, config.data.val_split) == \
        ("folder", "train", "val")
    assert config.model.num_classes == 11 and tuple(config.data.ignore_values) == (11,)
    assert config.optim.name == "adamw" and config.optim.schedule == "poly"
    smoke = get_config(name, "smoke")
    assert smoke.train.steps <= 4 and smoke.data.batch_size <= 2 and max(smoke.data.crop) <= 64
    with pytest.raises(ValueError, match=rf"configs/{name}.py: unknown argument"):
        get_config(name, "smok")


def test_segformer_cpu_budget():
    """:cpu keeps the CamVid CPU recipe's crops and batch, more steps in DeepLabv3+'s time."""
    cpu = get_config("segformer_b0_camvid", "cpu")
    assert tuple(cpu.data.crop) == (256, 256) and cpu.data.batch_size == 4
    assert cpu.train.steps == cpu.train.eval_every and 0 < cpu.train.max_minutes <= 90
    assert get_config("segformer_b0_camvid", "cpu,smoke").train.steps <= 4


@pytest.mark.parametrize("name, model_name", [("segformer_b0_camvid", "segformer_b0"),
                                              ("dpt_vit_b16_camvid", "dpt_vit_b16")])
def test_model_builds_from_the_config(name, model_name):
    config = get_config(name, "smoke")
    assert config.model.name == model_name
    model = build(config.model)
    x = jax.ShapeDtypeStruct((2, *config.data.crop, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    outputs = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert outputs["logits"].shape == (2, *config.data.crop, 11)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_configs_train_on_camvid(name, camvid_root):
    forward_backward(name, camvid_root)
