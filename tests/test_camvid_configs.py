"""The CamVid configs: the data section matches the dataset, every model builds from its config,
the smoke variants are small and train (forward + backward) on real CamVid frames."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common_camvid
from segjax.data import datasets
from segjax.models import build

CONFIGS = ("fcn8s_camvid", "deeplabv1_camvid", "deeplabv2_camvid", "deeplabv3_camvid",
           "deeplabv3plus_camvid")


def get_config(name: str, arg: str = ""):
    return importlib.import_module(f"configs.{name}").get_config(arg)


def test_class_names_match_the_datasets_classes_txt(camvid_root):
    rows = [line.split() for line in (camvid_root / "classes.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    names = {int(row[0]): row[1] for row in rows}
    colours = {int(row[0]): tuple(int(v) for v in row[2:5]) for row in rows}
    camvid = datasets.get("camvid")
    assert tuple(names[i] for i in range(11)) == common_camvid.CLASS_NAMES == camvid.class_names
    assert tuple(colours[i] for i in range(11)) == camvid.class_colours
    assert names[camvid.ignore_values[0]] == "Unlabelled"


@pytest.mark.parametrize("name", CONFIGS)
def test_data_section(name):
    config = get_config(name)
    data = config.data
    assert (data.source, data.train_split, data.val_split) == ("folder", "train", "val")
    assert data.root.endswith("camvid") and data.image_channels == 3
    assert tuple(data.label_values) == () and tuple(data.ignore_values) == (11,)
    assert config.model.num_classes == len(data.class_names) == 11
    assert tuple(data.mean) == (0.485, 0.456, 0.406) and tuple(data.std) == (0.229, 0.224, 0.225)
    assert config.optim.schedule == "poly" and config.optim.poly_power == 0.9


@pytest.mark.parametrize("name", CONFIGS)
def test_variants_and_bad_arguments(name):
    smoke, cpu = get_config(name, "smoke"), get_config(name, "cpu")
    assert smoke.train.steps <= 4 and smoke.data.batch_size <= 2
    assert max(smoke.data.crop) <= 64 and smoke.data.train_split == "train[:4]"
    assert cpu.train.max_minutes > 0 and cpu.data.batch_size <= 4
    sgd = get_config(name, "sgd")
    assert sgd.optim.name == "sgd" and sgd.optim.momentum == 0.9
    with pytest.raises(ValueError, match=rf"configs/{name}.py: unknown argument\(s\) \['smok'\]"):
        get_config(name, "smok")
    with pytest.raises(AttributeError):  # locked: a misspelt key is an error
        smoke.train.stpes = 1


@pytest.mark.parametrize("name", CONFIGS)
def test_model_builds_from_the_config(name):
    config = get_config(name, "smoke")
    model = build(config.model)
    x = jax.ShapeDtypeStruct((2, *config.data.crop, 3), jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)["logits"]
    assert logits.shape == (2, *config.data.crop, 11)


def smoke_batch(config, camvid_root):
    """Two real CamVid frames cropped to the smoke crop, normalised as the config says."""
    from PIL import Image
    names = sorted(p.name for p in (camvid_root / "train" / "images").iterdir())[:2]
    h, w = config.data.crop
    images, labels = [], []
    for file in names:
        image = np.asarray(Image.open(camvid_root / "train" / "images" / file))[:h, :w]
        label = np.asarray(Image.open(camvid_root / "train" / "labels" / file))[:h, :w]
        images.append((image / 255.0 - np.array(config.data.mean)) / np.array(config.data.std))
        labels.append(np.where(label == 11, config.data.ignore_index, label))
    return np.stack(images).astype(np.float32), np.stack(labels).astype(np.int32)


def forward_backward(name, camvid_root):
    config = get_config(name, "smoke")
    model = build(config.model)
    images, labels = smoke_batch(config, camvid_root)
    variables = model.init(jax.random.PRNGKey(0), images[:1], train=False)
    valid = labels != config.data.ignore_index

    def loss_fn(params):
        outputs, _ = model.apply({**variables, "params": params}, images, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(1)})
        log_probs = jax.nn.log_softmax(outputs["logits"])
        picked = jnp.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)
        return -jnp.sum(picked[..., 0] * valid) / valid.sum()

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
    grad_norm = sum(float(jnp.sum(g ** 2)) for g in jax.tree_util.tree_leaves(grads))
    # Random init over 11 classes: the loss starts near log(11) = 2.4 (not exactly: the scores
    # are not all zero), and every parameter tensor gets a gradient.
    assert np.isfinite(float(loss)) and 0.5 < float(loss) < 50 and grad_norm > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_configs_train_on_camvid(name, camvid_root):
    forward_backward(name, camvid_root)
