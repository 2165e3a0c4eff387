"""UNet++, Linknet, FPN and PSPNet on every registered encoder: forward and backward.

The pairs come from the registry (`registry.names("encoder")`), so an encoder that
registers later (the Mix Transformer, ...) is covered without editing this file.

- fast, every pair, abstract (`jax.eval_shape`, nothing compiled): the decoder and
  head on the encoder's features (their shapes traced once per encoder), forward and
  backward to the decoder's parameters and to the features themselves, so every
  stride and width an encoder gives reaches the decoder and the gradient flows back
  to each feature the decoder reads;
- fast, a few pairs, and slow, all the others: the whole Segmenter (encoder, decoder,
  head) compiled, one forward + backward step on random weights.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.segmenter import SegmentationHead, Segmenter

DECODERS = ("unetplusplus", "linknet", "fpn", "pspnet")
ENCODERS = registry.names("encoder")
PAIRS = [(decoder, encoder) for decoder in DECODERS for encoder in ENCODERS]
FAST_COMPILED = {("linknet", "resnet18"), ("pspnet", "mobilenetv2")}
NUM_CLASSES = 3
SHAPE = (2, 64, 64, 3)


def segmenter(decoder: str, encoder: str) -> Segmenter:
    return Segmenter(registry.build_part("encoder", {"name": encoder}),
                     registry.build_part("decoder", {"name": decoder}),
                     SegmentationHead(NUM_CLASSES))


def loss_and_grads(model, variables, x):
    def loss_fn(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(2)})
        return jnp.mean(jax.nn.log_softmax(outputs["logits"])[..., 0]), outputs["logits"]

    return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])


def check(variables, logits, grads):
    assert logits.shape == SHAPE[:3] + (NUM_CLASSES,)
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: a.shape, tree)
    assert shapes(grads) == shapes(variables["params"])


@functools.lru_cache(maxsize=None)
def encoder_features(encoder: str) -> dict:
    """The abstract features (shape and dtype per stride) of `encoder` on SHAPE."""
    module = registry.build_part("encoder", {"name": encoder})
    x = jax.ShapeDtypeStruct(SHAPE, jnp.float32)
    features, _ = jax.eval_shape(
        lambda v: module.init_with_output(jax.random.PRNGKey(0), v, train=False), x)
    return features


@pytest.mark.parametrize("decoder,encoder", PAIRS)
def test_decoder_on_encoder_features_traces_forward_and_backward(decoder, encoder):
    features = encoder_features(encoder)
    strides = sorted(features)
    decoder_module = registry.build_part("decoder", {"name": decoder})
    head = SegmentationHead(NUM_CLASSES)

    def run(maps):
        variables = decoder_module.init(jax.random.PRNGKey(0), dict(zip(strides, maps)))
        head_variables = head.init(jax.random.PRNGKey(1),
                                   decoder_module.apply(variables, dict(zip(strides, maps))))

        def loss_fn(params, maps):
            decoded, _ = decoder_module.apply(
                {**variables, "params": params}, dict(zip(strides, maps)), train=True,
                mutable=["batch_stats"], rngs={"dropout": jax.random.PRNGKey(2)})
            logits = head.apply(head_variables, decoded)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0]), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            variables["params"], maps)
        return variables, loss, logits, grads

    maps = [features[s] for s in strides]
    variables, loss, logits, (param_grads, feature_grads) = jax.eval_shape(run, maps)
    assert loss.shape == ()
    assert logits.shape[0] == SHAPE[0] and logits.shape[-1] == NUM_CLASSES
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: a.shape, tree)
    assert shapes(param_grads) == shapes(variables["params"])
    assert [g.shape for g in feature_grads] == [m.shape for m in maps]


def compiled_forward_backward(decoder, encoder, random_variables):
    model = segmenter(decoder, encoder)
    x = jax.random.normal(jax.random.PRNGKey(1), SHAPE)
    variables = random_variables(model, x)
    (loss, logits), grads = jax.jit(lambda v: loss_and_grads(model, v, x))(variables)
    check(variables, logits, grads)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    assert sum(float(jnp.sum(g ** 2)) for g in jax.tree_util.tree_leaves(grads)) > 0


@pytest.mark.parametrize("decoder,encoder", sorted(FAST_COMPILED))
def test_decoder_on_encoder_runs_compiled(decoder, encoder, random_variables, native_conv):
    compiled_forward_backward(decoder, encoder, random_variables)


@pytest.mark.slow
@pytest.mark.parametrize("decoder,encoder", [p for p in PAIRS if p not in FAST_COMPILED])
def test_decoder_on_encoder_runs_compiled_slow(decoder, encoder, random_variables, native_conv):
    compiled_forward_backward(decoder, encoder, random_variables)
