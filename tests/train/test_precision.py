"""Mixed precision and rematerialisation through `segjax.models.policy`, for any model."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.policy import ApplyPolicy, selected
from segjax.train import loop
from segjax.train.logging import read_metrics


class DenseNet(nn.Module):
    """A model with no dtype option and no segjax layers: flax Dense + BatchNorm."""

    @nn.compact
    def __call__(self, x, *, train=False):
        hidden = nn.Dense(8, name="dense")(x)
        hidden = nn.BatchNorm(use_running_average=not train, name="bn")(hidden)
        return {"logits": nn.Dense(3, name="classifier")(nn.relu(hidden)), "hidden": hidden}


def test_bfloat16_policy_reaches_a_model_without_dtype_code():
    model = DenseNet()
    x = jnp.ones((2, 4, 4, 5))
    variables = model.init(jax.random.key(0), x)
    outputs, updates = ApplyPolicy("bfloat16").apply(model, variables, x, train=True,
                                                      mutable=["batch_stats"])
    assert outputs["logits"].dtype == jnp.float32        # cast back for the loss
    jaxpr = str(jax.make_jaxpr(lambda v: ApplyPolicy("bfloat16").apply(model, v, x))(variables))
    assert re.search(r":bf16\[2,4,4,8\] = dot_general", jaxpr), jaxpr
    assert updates["batch_stats"]["bn"]["mean"].dtype == jnp.float32  # statistics stay f32
    assert jax.tree_util.tree_leaves(variables["params"])[0].dtype == jnp.float32


def test_bfloat16_policy_computes_segjax_layers_in_bfloat16():
    model = registry.build({"name": "unet", "width": 4, "depth": 1, "padding": "same",
                            "norm": "batch", "num_classes": 3})
    x = jnp.ones((1, 16, 16, 1))
    variables = model.init(jax.random.key(0), x)
    dtypes = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and hasattr(out, "dtype"):
            dtypes.append(str(out.dtype))
        return out

    with nn.intercept_methods(record):
        outputs = ApplyPolicy("bfloat16").apply(model, variables, x)
    assert dtypes and set(dtypes) == {"bfloat16"}, dtypes
    assert outputs["logits"].dtype == jnp.float32


def _train(workdir, steps, **overrides):
    from configs import unet_isbi
    config = unet_isbi.get_config("smoke")
    config.unlock()
    config.train.steps, config.train.log_every = steps, 1
    config.train.checkpoint_every = steps
    config.data.val_split = ""
    for key, value in overrides.items():
        section, name = key.split("__")
        config[section][name] = value
    loop.train_and_evaluate(config, workdir)
    return np.array([record["train/loss"] for record in read_metrics(workdir)])


@pytest.mark.slow
def test_a_bfloat16_run_tracks_the_float32_run(tmp_path, isbi_root):
    """The paper U-Net's smoke config on ISBI slices, 40 steps in float32 and in bfloat16."""
    f32 = _train(tmp_path / "f32", 40, optim__learning_rate=1e-3)
    bf16 = _train(tmp_path / "bf16", 40, optim__learning_rate=1e-3, model__dtype="bfloat16")
    relative = np.abs(bf16 - f32) / np.abs(f32)
    print("float32 ", np.round(f32, 4).tolist())
    print("bfloat16", np.round(bf16, 4).tolist())
    print(f"relative difference: mean {relative.mean():.4f}, max {relative.max():.4f}")
    assert not np.array_equal(bf16, f32)                  # bfloat16 did run
    assert f32[-5:].mean() < 0.8 * f32[:5].mean()         # the run learns ...
    assert bf16[-5:].mean() < 0.8 * bf16[:5].mean()       # ... in both precisions
    assert relative.mean() < 0.02 and relative.max() < 0.05


def test_remat_selects_blocks_and_paths():
    model = registry.build({"name": "deeplabv3plus_resnet50", "num_classes": 3})
    unet = registry.build({"name": "unet", "width": 4, "depth": 1, "padding": "same",
                           "num_classes": 3})
    chosen = {}

    def collect(key, levels):
        def interceptor(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and selected(levels, context.module):
                chosen.setdefault(key, set()).add("/".join(context.module.path))
            return next_fun(*args, **kwargs)
        return interceptor

    for key, target, shape, levels in (
            ("blocks", model, (1, 64, 64, 3), ("blocks",)),
            ("regex", model, (1, 64, 64, 3), (r"re:encoder/layer4_\d+",)),
            ("unet", unet, (1, 16, 16, 1), ("blocks",))):
        with nn.intercept_methods(collect(key, levels)):
            jax.eval_shape(lambda x, t=target: t.init(jax.random.key(0), x),
                           jax.ShapeDtypeStruct(shape, jnp.float32))
    blocks = chosen["blocks"]
    assert {"encoder/layer1_0", "encoder/layer4_2", "decoder/aspp"} <= blocks
    assert len([b for b in blocks if b.startswith("encoder/layer")]) == 16   # ResNet-50
    assert not blocks & {"encoder/conv1", "encoder/bn1", "head/classifier"}
    assert chosen["regex"] == {"encoder/layer4_0", "encoder/layer4_1", "encoder/layer4_2"}
    assert chosen["unet"] == {"down0", "bottom", "up0_conv"}   # not the up-convolution


@pytest.mark.parametrize("remat,policy", [("blocks", "nothing"), (r"re:down\d", "nothing"),
                                          ("blocks", "conv_outputs"), ("blocks", "dots")])
def test_remat_gives_the_same_loss_gradients_and_statistics(remat, policy):
    model = registry.build({"name": "unet", "width": 4, "depth": 2, "padding": "same",
                            "norm": "batch", "num_classes": 3})
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1))
    variables = model.init(jax.random.key(0), x)

    def loss(params, apply_policy):
        outputs, updates = apply_policy.apply(model, {**variables, "params": params}, x,
                                              train=True, mutable=["batch_stats"])
        return jnp.mean(outputs["logits"] ** 2), updates

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (plain, plain_stats), plain_grads = grad(variables["params"], ApplyPolicy())
    (rematted, stats), grads = grad(variables["params"], ApplyPolicy(remat=(remat,),
                                                                     remat_policy=policy))
    assert float(rematted) == pytest.approx(float(plain), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves((grads, stats)),
                    jax.tree_util.tree_leaves((plain_grads, plain_stats))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class DropoutBlock(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Dropout(0.5, deterministic=not train)(nn.Dense(8)(x))
        return nn.BatchNorm(use_running_average=not train)(x)


class DropoutNet(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        x = DropoutBlock(name="b1")(DropoutBlock(name="b0")(x, train=train), train=train)
        return {"logits": nn.Dense(3)(x)}


def test_remat_recomputes_dropout_with_the_same_masks():
    model, x = DropoutNet(), jax.random.normal(jax.random.key(0), (4, 5))
    variables = model.init(jax.random.key(1), x)

    def loss(params, apply_policy):
        outputs, _ = apply_policy.apply(model, {**variables, "params": params}, x, train=True,
                                        mutable=["batch_stats"],
                                        rngs={"dropout": jax.random.key(3)})
        return jnp.sum(outputs["logits"] ** 2)

    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    plain, plain_grads = grad(variables["params"], ApplyPolicy())
    for remat_policy in ("nothing", "dots"):
        value, grads = grad(variables["params"], ApplyPolicy(remat=("blocks",),
                                                             remat_policy=remat_policy))
        assert float(value) == pytest.approx(float(plain), rel=1e-6)
        for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(plain_grads)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_lowers_the_train_step_temporaries_on_cpu():
    """XLA:CPU drops jax.checkpoint's optimisation barrier; `recompute` still saves memory."""
    model = registry.build({"name": "unet", "width": 8, "depth": 2, "padding": "same",
                            "norm": "batch", "num_classes": 3})
    x = jax.ShapeDtypeStruct((2, 64, 64, 1), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1))))

    def temporaries(apply_policy):
        def loss(params, stats, images):
            outputs, _ = apply_policy.apply(model, {"params": params, "batch_stats": stats},
                                            images, train=True, mutable=["batch_stats"])
            return jnp.mean(outputs["logits"] ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(variables["params"], variables["batch_stats"],
                                                 x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain = temporaries(ApplyPolicy())
    assert temporaries(ApplyPolicy(remat=("blocks",))) < 0.8 * plain
    assert temporaries(ApplyPolicy(remat=("blocks",), remat_policy="conv_outputs")) < plain
