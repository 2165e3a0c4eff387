"""The evaluator and segjax.predict with a panoptic model: PQ, panoptic PNGs.

The model is an exact oracle: its input image carries the one-hot labels,
the centre heatmap and the offsets of the ground truth, which it passes
through as "logits", "center" and "offset". Evaluation must then find every
instance (PQ = 1) and every pixel's class (mIoU = 1).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from segjax import config as config_lib, evaluation, predict
from segjax.data import panoptic


class Oracle(nn.Module):
    """Channels [class 0, class 1, centre x 255, dy + 128, dx + 128] -> panoptic outputs."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        bias = self.param("bias", nn.initializers.zeros, ())
        return {"logits": x[..., :2] + bias, "center": x[..., 2:3] / 255.0,
                "offset": x[..., 3:5] - 128.0}


def _example(seed):
    rng = np.random.default_rng(seed)
    label = np.zeros((40, 48), np.int64)
    for top, left in rng.integers(2, 30, (4, 2)):
        label[top:top + 7, left:left + 9] = 1
    instance = panoptic.connected_instances(label, (1,))
    targets = panoptic.panoptic_targets(label, instance, sigma=2.0)
    image = np.concatenate([np.eye(2)[label] * 10, np.round(targets["center"][..., None] * 255),
                            targets["offset"] + 128], -1).astype(np.uint8)
    return {"image": image, "label": label, "instance": instance, "name": f"{seed}.png"}


def _config():
    config = config_lib.base_config()
    config.model.num_classes = 2
    config.data.image_channels = 5
    config.data.mean, config.data.std = (0.0,), (1 / 255,)   # normalisation is the identity
    config.data.crop = (40, 48)
    config.data.class_names = ("membrane", "cell")
    config.data.panoptic.thing_classes = (1,)
    config.eval.panoptic.stuff_area = 16
    return config


def test_evaluator_reports_pq_of_a_panoptic_model(tmp_path):
    config, model = _config(), Oracle()
    variables = {"params": {"bias": jnp.zeros(())}}
    predict_fn = evaluation.make_predict_fn(model, variables)
    panoptic_fn = evaluation.make_panoptic_fn(model, variables, config)
    assert panoptic_fn is not None
    examples = [_example(seed) for seed in range(3)]
    options = config_lib.EvalOptions.from_config(config)
    result, kept = evaluation.evaluate(predict_fn, config, examples, options,
                                       panoptic_fn=panoptic_fn, keep_predictions=1)
    assert result["pq"] == 1.0 and result["miou"] == 1.0
    assert result["pq_tp"][1] == sum(int(e["instance"].max()) for e in examples)
    assert kept[0].tolist() == examples[0]["label"].tolist()
    flipped, _ = evaluation.evaluate(predict_fn, config, examples,
                                     config_lib.EvalOptions(flip=True), panoptic_fn=panoptic_fn)
    assert flipped["pq"] == 1.0                 # PQ from the whole-image pass either way
    evaluation.write_reports(result, config, options, "val", tmp_path)
    assert "| cell | thing | 100.00 |" in (tmp_path / "metrics.md").read_text()

    config.data.panoptic.thing_classes = ()
    assert evaluation.make_panoptic_fn(model, variables, config) is None


def test_predict_writes_panoptic_pngs(tmp_path):
    config, model = _config(), Oracle()
    panoptic_fn = evaluation.make_panoptic_fn(model, {"params": {"bias": jnp.zeros(())}}, config)
    example = _example(5)
    for folder in ("panoptic", "panoptic_ids"):
        (tmp_path / folder).mkdir()
    colours = np.array([[20, 20, 20], [200, 60, 60]], np.uint8)
    predict.write_panoptic(panoptic_fn, config, example["image"], "x", tmp_path, colours)
    rgb = np.asarray(Image.open(tmp_path / "panoptic" / "x.png"))
    assert rgb.shape == (40, 48, 3)
    assert np.all(rgb[example["label"] == 0] == 20)
    ids = np.asarray(Image.open(tmp_path / "panoptic_ids" / "x.png")).astype(np.int64)
    ids = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
    classes, instances = ids // 1000, ids % 1000
    assert np.all(classes == example["label"])
    assert len(np.unique(instances[example["label"] == 1])) == example["instance"].max()
    assert jax.tree_util.tree_leaves(panoptic_fn(np.zeros((2, 40, 48, 5), np.float32)))
