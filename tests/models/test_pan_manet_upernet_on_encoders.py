"""PAN, MAnet and UPerNet over every registered 2D encoder: forward and backward.

The encoders are read from the registry, so an encoder that lands later is covered. Fast
suite: each decoder is traced abstractly (`jax.eval_shape`) forward and backward over every
encoder's features (the encoder traced once, abstractly: the decoder sees nothing but that
feature dict), and each decoder is compiled and run once on small features. Slow suite: every
encoder + decoder pair compiled and run end to end as a `segmenter` model.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from tests.models.test_registry import check_outputs, forward_backward

DECODERS = ("pan", "manet", "upernet")
# PAN's feature pyramid attention pools the deepest (1/32) map three times: 256 leaves 1x1.
INPUT_SIZE = {"pan": 256, "manet": 64, "upernet": 64}
NUM_CLASSES = 3


def two_d_encoders() -> list[str]:
    """Registered encoders whose registered input shape, if any, is (N, H, W, C)."""
    return [name for name in registry.names("encoder")
            if registry.get("encoder", name).input_shape in (None, ())
            or len(registry.get("encoder", name).input_shape) == 4]


def segmenter(encoder: str, decoder: str, **decoder_options):
    return registry.build({"name": "segmenter", "num_classes": NUM_CLASSES,
                           "encoder": {"name": encoder},
                           "decoder": {"name": decoder, **decoder_options}})


PAIRS = [(decoder, encoder) for decoder in DECODERS for encoder in two_d_encoders()]


@functools.lru_cache(maxsize=None)
def encoder_features(encoder: str, size: int) -> dict:
    """The abstract features (shapes and dtypes) of `encoder` on a (2, size, size, 3) batch."""
    module = registry.build_part("encoder", {"name": encoder})
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    features, _ = jax.eval_shape(
        lambda v: module.init_with_output(jax.random.PRNGKey(0), v, train=False), x)
    return features


def decoder_forward_backward(decoder, features):
    """Variables, output and the gradients (parameters and features) of a training step's
    forward and backward through the decoder alone."""
    variables = decoder.init(jax.random.PRNGKey(0), features, train=False)

    def loss_fn(params, features):
        output, _ = decoder.apply({**variables, "params": params}, features, train=True,
                                  mutable=["batch_stats"])
        return jnp.mean(output ** 2), output

    (_, output), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        variables["params"], features)
    return variables, output, grads


@pytest.mark.parametrize("decoder,encoder", PAIRS)
def test_decoder_traces_forward_and_backward_over_encoder(decoder, encoder):
    size = INPUT_SIZE[decoder]
    features = encoder_features(encoder, size)
    module = registry.build_part("decoder", {"name": decoder})
    variables, output, (param_grads, feature_grads) = jax.eval_shape(
        lambda f: decoder_forward_backward(module, f), features)
    assert output.shape[0] == 2 and output.shape[1:3] in ((size // 4,) * 2, (size,) * 2)
    assert jax.tree_util.tree_map(jnp.shape, param_grads) == jax.tree_util.tree_map(
        jnp.shape, variables["params"])
    assert {k: v.shape for k, v in feature_grads.items()} == {
        k: v.shape for k, v in features.items()}


def run_compiled(decoder: str, encoder: str, size: int, **decoder_options):
    model = segmenter(encoder, decoder, **decoder_options)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, size, size, 3))
    variables, loss, outputs, grads = jax.jit(lambda v: forward_backward(model, v))(x)
    check_outputs(model, x.shape, outputs, variables, grads)
    assert outputs["logits"].shape == (2, size, size, NUM_CLASSES)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree_util.tree_leaves(grads))
    assert sum(float(jnp.sum(g ** 2)) for g in jax.tree_util.tree_leaves(grads)) > 0


# Narrow decoders on small features of ResNet-34's widths: the compiled path of each decoder.
SMALL = {"pan": {"features": 8}, "manet": {"decoder_channels": (16, 8, 8, 8, 8),
                                           "pab_channels": 8},
         "upernet": {"features": 16}}


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_runs_forward_and_backward(decoder):
    rng = np.random.default_rng(0)
    size = INPUT_SIZE[decoder]
    features = {stride: jnp.asarray(rng.standard_normal((2, size // stride, size // stride,
                                                         width)), jnp.float32)
                for stride, width in {2: 8, 4: 8, 8: 16, 16: 16, 32: 32}.items()}
    module = registry.build_part("decoder", {"name": decoder, **SMALL[decoder]})
    _, output, (param_grads, feature_grads) = jax.jit(
        lambda f: decoder_forward_backward(module, f))(features)
    assert bool(jnp.isfinite(output).all())
    leaves = jax.tree_util.tree_leaves((param_grads, feature_grads))
    assert all(bool(jnp.isfinite(g).all()) for g in leaves)
    # Every feature the decoder reads (PAN, UPerNet: strides >= 4) gets a gradient.
    min_stride = 2 if decoder == "manet" else 4
    assert all(float(jnp.abs(g).sum()) > 0 for stride, g in feature_grads.items()
               if stride >= min_stride)


@pytest.mark.slow
@pytest.mark.parametrize("decoder,encoder", PAIRS)
def test_decoder_runs_forward_and_backward_over_every_encoder(decoder, encoder):
    run_compiled(decoder, encoder, INPUT_SIZE[decoder])
