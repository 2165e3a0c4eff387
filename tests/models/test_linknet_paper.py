"""The paper's LinkNet (`linknet_resnet18`, decoder `linknet_paper`, arXiv:1707.03718).

The parameter count is derived layer by layer below and must be the model's; at the
paper's class count it rounds to Table 3's 11.5M. No reference implementation runs
here (the authors' code is Torch7), so the layout is checked by its kernels, its links
and its output shapes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.decoders.linknet import LinknetPaperDecoder
from segjax.models.segmenter import count_params


def conv(k, c_in, c_out, bias=False):
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c):
    return 2 * c     # scale and bias (running statistics are not parameters)


def basic_block(c_in, c_out, downsample):
    """ResNet's basic block: two 3x3 conv + BN, a 1x1 conv + BN projection if it downsamples."""
    return (conv(3, c_in, c_out) + bn(c_out) + conv(3, c_out, c_out) + bn(c_out)
            + (conv(1, c_in, c_out) + bn(c_out) if downsample else 0))


def decoder_block(m, n):
    """1x1 m -> m/4 + BN, 3x3 full-conv m/4 -> m/4 + BN, 1x1 m/4 -> n + BN; no conv biases."""
    return conv(1, m, m // 4) + bn(m // 4) + conv(3, m // 4, m // 4) + bn(m // 4) \
        + conv(1, m // 4, n) + bn(n)


def paper_linknet_params(num_classes):
    initial = conv(7, 3, 64) + bn(64)                                   # 9,536
    encoder = (basic_block(64, 64, False) * 2                           # layer1: 147,968
               + basic_block(64, 128, True) + basic_block(128, 128, False)    # 525,568
               + basic_block(128, 256, True) + basic_block(256, 256, False)   # 2,099,712
               + basic_block(256, 512, True) + basic_block(512, 512, False))  # 8,393,728
    decoder = (decoder_block(64, 64) + decoder_block(128, 64)           # 4,544 + 15,616
               + decoder_block(256, 128) + decoder_block(512, 256))     # 61,952 + 246,784
    final = (conv(3, 64, 32) + bn(32)                                   # full-conv: 18,496
             + conv(3, 32, 32) + bn(32)                                 # conv: 9,280
             + conv(2, 32, num_classes, bias=True))                     # classifier: 129 K
    return initial + encoder + decoder + final


def test_paper_count_is_derived_by_hand_and_rounds_to_the_papers_11_5m():
    """ResNet-18 without fc (11,176,512) + decoder blocks (328,896) + final block
    (27,776 + 129 per class). The paper's CamVid network has 12 outputs (the authors'
    loadCamVid.lua: 11 classes and 'Unlabeled'); segjax's CamVid config trains 11."""
    assert paper_linknet_params(12) == 11_176_512 + 328_896 + 27_776 + 129 * 12 == 11_534_732
    for num_classes in (11, 12):
        model = registry.build({"name": "linknet_resnet18", "num_classes": num_classes})
        x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
        variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
        assert count_params(variables) == paper_linknet_params(num_classes)
    assert round(paper_linknet_params(12) / 1e6, 1) == 11.5
    assert round(paper_linknet_params(11) / 1e6, 1) == 11.5    # 11,534,603


def test_paper_layout_kernels_and_strides():
    """3x3 full-convs without bias, block widths (m, n) of Table 1, the final block."""
    model = registry.build({"name": "linknet_resnet18", "num_classes": 5})
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    decoder = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)["params"][
        "decoder"]
    for number, (m, n) in {1: (64, 64), 2: (128, 64), 3: (256, 128), 4: (512, 256)}.items():
        block = decoder[f"block{number}"]
        assert block["reduce"]["conv"]["kernel"].shape == (1, 1, m, m // 4)
        assert block["up"] == {"kernel": jax.ShapeDtypeStruct((3, 3, m // 4, m // 4),
                                                              jnp.float32)}
        assert block["expand"]["conv"]["kernel"].shape == (1, 1, m // 4, n)
    assert decoder["final_up"]["kernel"].shape == (3, 3, 64, 32)
    assert decoder["final_conv"]["conv"]["kernel"].shape == (3, 3, 32, 32)
    assert decoder["classifier"]["kernel"].shape == (2, 2, 32, 5)
    assert decoder["classifier"]["bias"].shape == (5,)


def tiny_features(key, batch=1, size=(32, 64)):
    """Stride-keyed features of a narrow ResNet-like encoder (widths 8, 8, 16, 32, 64)."""
    widths = {2: 8, 4: 8, 8: 16, 16: 32, 32: 64}
    keys = jax.random.split(key, len(widths))
    return {s: jax.nn.relu(jax.random.normal(k, (batch, size[0] // s, size[1] // s, w)))
            for k, (s, w) in zip(keys, widths.items())}


def test_paper_decoder_links_strides_4_8_16_and_the_pooled_initial_block():
    """Scores at the input's size; each linked feature reaches the output (its gradient
    is non-zero), blocks 2..4 upsample x2 and block 1 keeps stride 4."""
    decoder = LinknetPaperDecoder(num_classes=3)
    features = tiny_features(jax.random.PRNGKey(0))
    variables = jax.jit(decoder.init)(jax.random.PRNGKey(1), features)

    def energy(features):
        scores = decoder.apply(variables, features)
        return jnp.sum(scores ** 2), scores

    (_, scores), grads = jax.jit(jax.value_and_grad(energy, has_aux=True))(features)
    assert scores.shape == (1, 32, 64, 3)
    assert all(float(jnp.abs(grads[s]).max()) > 0 for s in (2, 4, 8, 16, 32))
    params = variables["params"]
    assert params["block1"]["expand"]["conv"]["kernel"].shape[-1] == 8   # the initial block
    assert params["block4"]["expand"]["conv"]["kernel"].shape[-1] == 32  # layer3's width


def test_paper_decoder_names_missing_features_and_bad_sizes():
    features = tiny_features(jax.random.PRNGKey(0))
    decoder = LinknetPaperDecoder(num_classes=2)
    with pytest.raises(ValueError, match=r"linknet_paper decoder: needs encoder features at "
                                         r"strides \(2, 4, 8, 16, 32\).*missing \[2\]"):
        decoder.init(jax.random.PRNGKey(0), {s: f for s, f in features.items() if s != 2})
    model = registry.build({"name": "linknet_resnet18", "num_classes": 2})
    with pytest.raises(ValueError, match="linknet_paper decoder: block .* divisible by 32"):
        x = jax.ShapeDtypeStruct((1, 72, 64, 3), jnp.float32)
        jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)


SHAPES = pytest.mark.parametrize("shape", [(1, 64, 64, 3), (2, 64, 96, 3)],
                                 ids=["64x64", "64x96"])


def forward_backward(model, variables, x):
    """Train-mode loss, logits and gradients of one step."""
    def loss_fn(params):
        outputs, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"])
        return jnp.mean(jax.nn.log_softmax(outputs["logits"])[..., 0]), outputs["logits"]
    return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])


@SHAPES
def test_linknet_resnet18_forward_backward_shapes(shape):
    """Abstract (nothing compiled): logits at the input's size, a gradient per parameter."""
    model = registry.build({"name": "linknet_resnet18", "num_classes": 4})
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(1), v), x)
    (loss, logits), grads = jax.eval_shape(lambda v, x: forward_backward(model, v, x),
                                           variables, x)
    assert loss.shape == () and logits.shape == (*shape[:3], 4)
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: a.shape, tree)
    assert shapes(grads) == shapes(variables["params"])


@pytest.mark.slow
@SHAPES
def test_linknet_resnet18_compiled_step_at_full_resolution(shape):
    """Compiled forward + backward on random weights and inputs (about 25 s each here)."""
    model = registry.build({"name": "linknet_resnet18", "num_classes": 4})
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    variables = model.init(jax.random.PRNGKey(1), x)
    (loss, logits), grads = jax.jit(lambda v: forward_backward(model, v, x))(variables)
    assert logits.shape == (*shape[:3], 4)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    assert float(jnp.abs(grads["encoder"]["conv1"]["kernel"]).max()) > 0
