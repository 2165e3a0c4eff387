"""The CamVid configs of UNet++, Linknet (smp's and the paper's), FPN, PSPNet (and the
U-Net-ResNet34 baseline of the UNet++ comparison): the shared CamVid sections, the variants,
the model each builds, and a smoke forward + backward on real frames (slow)."""

import jax
import jax.numpy as jnp
import pytest

from segjax.models import build
from tests.test_camvid_configs import forward_backward, get_config

CONFIGS = ("unetplusplus_resnet34_camvid", "unetplusplus_camvid", "unet_resnet34_camvid",
           "linknet_resnet34_camvid", "linknet_resnet18_camvid", "fpn_resnet34_camvid",
           "fpn_resnet50_camvid", "pspnet_resnet34_camvid", "pspnet_resnet50_camvid")
# Models that return aux_logits, and the loss weight each config gives them.
AUX_WEIGHTS = {"unetplusplus_resnet34_camvid": 1.0, "unetplusplus_camvid": 1.0,
               "pspnet_resnet50_camvid": 0.4}


@pytest.mark.parametrize("name", CONFIGS)
def test_camvid_sections_and_variants(name):
    config, smoke, cpu = get_config(name), get_config(name, "smoke"), get_config(name, "cpu")
    assert config.data.root.endswith("camvid") and config.model.num_classes == 11
    assert tuple(config.data.ignore_values) == (11,) and config.optim.schedule == "poly"
    assert smoke.train.steps <= 4 and max(smoke.data.crop) <= 64
    assert cpu.train.max_minutes > 0 and cpu.data.batch_size <= 4
    with pytest.raises(ValueError, match=rf"configs/{name}.py: unknown argument"):
        get_config(name, "smok")


@pytest.mark.parametrize("name", CONFIGS)
def test_model_builds_and_gives_full_size_logits(name):
    config = get_config(name, "smoke")
    model = build(config.model)
    for size in (config.data.crop, config.eval.tile or (352, 480)):
        x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
        variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
        outputs = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
        assert outputs["logits"].shape == (1, *size, 11)
        assert ("aux_logits" in outputs) == (name in AUX_WEIGHTS)
    if name in AUX_WEIGHTS:
        assert config.loss.aux_weight == AUX_WEIGHTS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_configs_train_on_camvid(name, camvid_root):
    forward_backward(name, camvid_root)
