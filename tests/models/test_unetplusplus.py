"""UNet++: the paper's parameter counts, deep supervision, and pruning that builds and runs less."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import losses
from segjax.config import base_config
from segjax.models import registry
from segjax.models.decoders.unetplusplus import PAPER_FILTERS
from segjax.models.segmenter import count_params
from segjax.ops import conv as conv_ops


# ----------------------------------------------------------------------------- counting by hand

def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def unit(c_in: int, c_out: int, norm: bool) -> int:
    """The paper's node: two 3x3 convs + ReLU; with BN the convs lose their bias and
    each BN has a scale and a bias per channel."""
    return conv(c_in, c_out, 3, not norm) + conv(c_out, c_out, 3, not norm) + (
        4 * c_out if norm else 0)


def encoder_params(filters, c_in: int, norm: bool) -> int:
    """X^{0,0}..X^{D,0}: one unit per row."""
    widths = (c_in,) + tuple(filters)
    return sum(unit(widths[i], widths[i + 1], norm) for i in range(len(filters)))


def unet_params(filters=PAPER_FILTERS, c_in: int = 1, classes: int = 1, norm: bool = False):
    """U-Net (Ronneberger et al.) of the same widths: per decoder row a 2x2 up-conv from the row
    below and a unit on [up, skip] (2 f_i channels), and one 1x1 classifier."""
    f = filters
    decoder = sum(conv(f[i + 1], f[i], 2) + unit(2 * f[i], f[i], norm)
                  for i in range(len(f) - 1))
    return encoder_params(f, c_in, norm) + decoder + conv(f[0], classes, 1)


def unetpp_params(filters=PAPER_FILTERS, c_in: int = 1, classes: int = 1, norm: bool = False,
                  deep_supervision: bool = True, depth: int = 4):
    """UNet++ L^depth: node X^{i,j} (j >= 1, i + j <= depth) has its own 2x2 up-conv from
    X^{i+1,j-1} and a unit on [up, X^{i,j-1}, ..., X^{i,0}] ((j + 1) f_i channels); a 1x1
    classifier on each branch X^{0,1..depth} with deep supervision, on X^{0,depth} without."""
    f = filters
    nodes = sum(conv(f[i + 1], f[i], 2) + unit((j + 1) * f[i], f[i], norm)
                for j in range(1, depth + 1) for i in range(depth + 1 - j))
    heads = depth if deep_supervision else 1
    return encoder_params(f[:depth + 1], c_in, norm) + nodes + heads * conv(f[0], classes, 1)


def abstract_count(config: dict, shape=(1, 64, 64, 1)) -> int:
    model = registry.build(config)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return count_params(jax.eval_shape(
        lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x))


# Zhou et al. 2018 (arXiv:1807.10165), Table 1: U-Net 7.76M, UNet++ 9.04M with and without deep
# supervision, filters 32..512. Their Keras code (conv + bias + ReLU, no BN) on one input channel
# and one class gives these counts exactly by the formulas above; they round to the paper's.
PAPER_UNET = 7_759_521
PAPER_UNETPP = 9_041_601
PAPER_UNETPP_DS = 9_041_700      # + 3 more 1x1 classifiers of 33 parameters
# With BN after every conv (segjax's default, as the issue asks): each conv's bias is replaced by
# a BN scale and bias, + 1 parameter per output channel of every 3x3 conv: 3,648 more for the
# UNet++ (the paper's numbers do not include BN; 9,045,348 would round to 9.05M).
BN_UNETPP_DS = 9_045_348
# The pruned UNet++ L^1..L^4 (no BN, deep supervision): they round to 0.1M, 0.5M, 2.2M, 9.0M.
PRUNED = {1: 100_961, 2: 511_138, 3: 2_205_027, 4: 9_041_700}


def test_analytic_counts_round_to_the_papers_table():
    assert unet_params() == PAPER_UNET and round(PAPER_UNET / 1e6, 2) == 7.76
    assert unetpp_params(deep_supervision=False) == PAPER_UNETPP
    assert unetpp_params() == PAPER_UNETPP_DS
    assert round(PAPER_UNETPP / 1e6, 2) == round(PAPER_UNETPP_DS / 1e6, 2) == 9.04
    assert unetpp_params(norm=True) == BN_UNETPP_DS
    assert {d: unetpp_params(depth=d) for d in PRUNED} == PRUNED


def test_paper_network_has_the_analytic_counts():
    assert abstract_count({"name": "unetplusplus", "norm": None,
                           "deep_supervision": False}) == PAPER_UNETPP
    assert abstract_count({"name": "unetplusplus", "norm": None}) == PAPER_UNETPP_DS
    assert abstract_count({"name": "unetplusplus"}) == BN_UNETPP_DS
    assert abstract_count({"name": "unetplusplus", "num_classes": 3}, (1, 64, 64, 3)) == \
        unetpp_params(c_in=3, classes=3, norm=True)
    # segjax's U-Net at the same widths (padded, as the UNet++ paper's) is the paper's U-Net.
    assert abstract_count({"name": "unet", "width": 32, "padding": "same",
                           "num_classes": 1}) == PAPER_UNET


def flops(model, shape) -> float:
    """Forward FLOPs of XLA's cost analysis of the lowered (uncompiled) forward pass."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x)
    return float(lowered.cost_analysis()["flops"])


def test_pruning_shrinks_parameters_and_flops(monkeypatch):
    """L^1 < L^2 < L^3 < L^4 in parameters (exactly the analytic counts) and in forward FLOPs:
    the pruned model does not build or run the nodes (and encoder rows) it does not need."""
    # Count the convolutions themselves, not a CPU-specific formulation of them.
    monkeypatch.setattr(conv_ops, "_default_implementation", "native")
    counts, costs = [], []
    for depth in PRUNED:
        config = {"name": "unetplusplus", "norm": None, "prune_depth": depth}
        counts.append(abstract_count(config))
        costs.append(flops(registry.build(config), (1, 64, 64, 1)))
    assert counts == list(PRUNED.values())
    assert costs == sorted(costs) and len(set(costs)) == 4, costs
    assert costs[0] < 0.2 * costs[-1]


def test_pruned_resnet34_unetplusplus_truncates_the_encoder(monkeypatch):
    """smp layout on ResNet-34: pruned at d, the encoder stops at stride 2^(d+1)."""
    shape = (1, 64, 64, 3)
    counts = [abstract_count({"name": "unetplusplus_resnet34", "num_classes": 5,
                              "deep_supervision": True, "prune_depth": d}, shape)
              for d in (1, 2, 3, 4)]
    full = abstract_count({"name": "unetplusplus_resnet34", "num_classes": 5,
                           "deep_supervision": True}, shape)
    assert counts == sorted(counts) and len(set(counts)) == 4 and counts[-1] == full
    # L^1: the stem, layer1, X^{0,1} and its classifier only.
    monkeypatch.setattr(conv_ops, "_default_implementation", "native")
    assert counts[0] < 0.02 * full
    costs = [flops(registry.build({"name": "unetplusplus_resnet34", "num_classes": 5,
                                   "prune_depth": d}), shape) for d in (1, 4)]
    assert costs[0] < 0.3 * costs[1]


@pytest.fixture(scope="module")
def small_unetpp():
    """A narrow paper UNet++ with deep supervision, its variables and an input."""
    filters = (4, 8, 8, 16, 16)
    model = registry.build({"name": "unetplusplus", "filters": filters, "num_classes": 3})
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 48, 1))
    return filters, model, model.init(jax.random.PRNGKey(0), x, train=False), x


def test_deep_supervision_outputs_every_branch(small_unetpp):
    filters, model, variables, x = small_unetpp
    outputs = model.apply(variables, x, train=False)
    assert outputs["logits"].shape == (2, 32, 48, 3)
    assert len(outputs["aux_logits"]) == 3
    assert all(a.shape == (2, 32, 48, 3) for a in outputs["aux_logits"])
    average = registry.build({"name": "unetplusplus", "filters": filters, "num_classes": 3,
                              "combine": "average"})
    averaged = average.apply(variables, x, train=False)
    branches = outputs["aux_logits"] + [outputs["logits"]]
    np.testing.assert_allclose(averaged["logits"], sum(branches) / 4, rtol=1e-5, atol=1e-6)
    assert len(averaged["aux_logits"]) == 4


def test_pruned_model_is_the_full_models_branch(small_unetpp):
    """The pruned model's variables are a subset of the full model's (same names and shapes),
    and with them it gives exactly the full model's branch d."""
    filters, model, variables, x = small_unetpp
    outputs = model.apply(variables, x, train=False)
    branches = outputs["aux_logits"] + [outputs["logits"]]
    for depth in (1, 2, 3):
        pruned = registry.build({"name": "unetplusplus", "filters": filters, "num_classes": 3,
                                 "prune_depth": depth})
        shapes = jax.eval_shape(lambda v: pruned.init(jax.random.PRNGKey(0), v, train=False), x)
        subset = jax.tree_util.tree_map_with_path(
            lambda path, _: _lookup(variables, path), shapes)
        pruned_outputs = pruned.apply(subset, x, train=False)
        np.testing.assert_allclose(pruned_outputs["logits"], branches[depth - 1],
                                   rtol=1e-5, atol=1e-6)
        assert len(pruned_outputs.get("aux_logits", [])) == depth - 1


def _lookup(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree


def test_deep_supervision_loss_adds_every_branch(small_unetpp):
    _, model, variables, x = small_unetpp
    outputs = model.apply(variables, x, train=False)
    config = base_config().loss
    config.aux_weight = 1.0
    labels = jnp.zeros(x.shape[:3], jnp.int32)
    loss, components = losses.segmentation_loss(outputs, {"label": labels}, config,
                                                 num_classes=3, ignore_index=255)
    each = [losses.segmentation_loss({"logits": b}, {"label": labels}, config, num_classes=3,
                                     ignore_index=255)[0]
            for b in outputs["aux_logits"] + [outputs["logits"]]]
    np.testing.assert_allclose(loss, sum(each), rtol=1e-5)
    assert "aux" in components


def test_bad_options_are_named():
    x = jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32)
    init = lambda model: jax.eval_shape(
        lambda v: model.init(jax.random.PRNGKey(0), v, train=False), x)
    with pytest.raises(ValueError, match=r"prune_depth must be in 1\.\.4, got 5"):
        init(registry.build({"name": "unetplusplus", "prune_depth": 5}))
    with pytest.raises(ValueError, match="combine must be one of"):
        init(registry.build({"name": "unetplusplus", "combine": "mean"}))
    decoder = registry.build_part("decoder", {"name": "unetplusplus", "deep_supervision": True})
    with pytest.raises(ValueError, match="deep_supervision and prune_depth need num_classes"):
        decoder.init(jax.random.PRNGKey(0), {2: jnp.zeros((1, 8, 8, 4)),
                                             4: jnp.zeros((1, 4, 4, 8))})
    decoder = registry.build_part("decoder", {"name": "unetplusplus",
                                              "decoder_channels": (16,)})
    with pytest.raises(ValueError, match=r"decoder_channels \(16,\) needs at least one width"):
        decoder.init(jax.random.PRNGKey(0), {2: jnp.zeros((1, 8, 8, 4)),
                                             4: jnp.zeros((1, 4, 4, 8)),
                                             8: jnp.zeros((1, 2, 2, 8))})
