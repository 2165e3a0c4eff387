"""CGNet (Wu et al. 2018, arXiv:1811.08201): the official parameter count, structure, and parity
with a PyTorch re-implementation of the official module under the official state_dict names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.segmenter import count_params
from tests import torch_refs

# The official code (wutianyiRosun/CGNet, model/CGNet.py, Context_Guided_Network(classes=19),
# M=3, N=21) has 496,306 parameters (counted on this file's re-implementation of it, which
# keeps its layers and names). Derivation (conv weights, BN scale + bias, PReLU slopes, FC
# weights + biases):
#   stage 1: 3x3 3->32 (864 + 64 + 32) + 2 x 3x3 32->32 (9,216 + 64 + 32)    =  19,584
#   b1: BN + PReLU over 32 + 3 channels                                     =     105
#   stage 2 down block: 3x3 s2 35->64 + BN + PReLU (20,160 + 128 + 64), f_loc and f_sur
#     depthwise 2 x 576, f_joi BN + PReLU on 128 (384), 1x1 128->64 (8,192), f_glo
#     64->8->64 (520 + 576)                                                 =  31,176
#   stage 2 CG block: 1x1 64->32 + BN + PReLU (2,144), f_loc + f_sur 2 x 288, f_joi on 64
#     (192), f_glo 64->8->64 (1,096)                                        =   4,008 (x 2)
#   bn_prelu_2 over 64 + 64 + 3 channels                                    =     393
#   stage 3 down block: 3x3 s2 131->128 (150,912 + 256 + 128), 2 x 1,152, f_joi on 256
#     (768), 1x1 256->128 (32,768), f_glo 128->8->128 (1,032 + 1,152)       = 189,320
#   stage 3 CG block: 1x1 128->64 (8,192 + 128 + 64), 2 x 576, f_joi on 128 (384), f_glo
#     128->8->128 (2,184)                                                   =  12,104 (x 20)
#   bn_prelu_3 over 256 channels (768), classifier 1x1 256->19 without bias (4,864)
#   19,584 + 105 + 31,176 + 2 x 4,008 + 393 + 189,320 + 20 x 12,104 + 768 + 4,864 = 496,306
OFFICIAL_PARAMS_19_CLASSES = 496_306


def parameter_shapes(num_classes: int, shape=(1, 64, 64, 3)):
    model = registry.build({"name": "cgnet", "num_classes": num_classes})
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return model, jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)


def test_cgnet_has_the_official_parameter_count():
    _, variables = parameter_shapes(19)
    assert count_params(variables) == OFFICIAL_PARAMS_19_CLASSES
    # Each term of the derivation above.
    params = variables["params"]
    size = lambda tree: sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(tree))
    assert sum(size(params[f"level1_{i}"]) for i in range(3)) == 19_584
    assert size(params["b1"]) == 105 and size(params["bn_prelu_2"]) == 393
    assert size(params["level2_down"]) == 31_176 and size(params["level2_0"]) == 4_008
    assert size(params["level3_down"]) == 189_320 and size(params["level3_0"]) == 12_104
    assert size(params["bn_prelu_3"]) == 768 and size(params["classifier"]) == 256 * 19
    assert "level3_19" in params and "level3_20" not in params and "level2_2" not in params


def test_cgnet_structure():
    _, variables = parameter_shapes(11)
    params = variables["params"]
    # f_loc / f_sur are depthwise 3x3 on half the width (CG block) or the full width (down).
    assert params["level2_0"]["f_loc"]["kernel"].shape == (3, 3, 1, 32)
    assert params["level3_down"]["f_sur"]["kernel"].shape == (3, 3, 1, 128)
    assert params["level3_down"]["reduce_input"]["conv"]["kernel"].shape == (3, 3, 131, 128)
    # f_glo reduction 8 in stage 2, 16 in stage 3.
    assert params["level2_1"]["f_glo"]["fc0"]["kernel"].shape == (64, 8)
    assert params["level3_4"]["f_glo"]["fc0"]["kernel"].shape == (128, 8)
    assert params["classifier"]["kernel"].shape == (1, 1, 256, 11)


def test_cgnet_output_is_bilinear_x8_at_any_size():
    model, variables = parameter_shapes(11, (2, 90, 124, 3))
    x = jax.ShapeDtypeStruct((2, 90, 124, 3), jnp.float32)
    assert jax.eval_shape(model.apply, variables, x)["logits"].shape == (2, 90, 124, 11)


def test_cgnet_rejects_stages_without_cg_blocks():
    model = registry.build({"name": "cgnet", "stage3_blocks": 1})
    with pytest.raises(ValueError, match="cgnet: stage3_blocks must be at least 2"):
        jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v),
                       jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))


# ----------------------------------------------------------------------------- PyTorch reference

def official_cgnet(num_classes: int, stage2_blocks: int = 3, stage3_blocks: int = 21):
    """The official Context_Guided_Network re-implemented in PyTorch for this test, with the
    official module names (so its state_dict is the official checkpoints' layout)."""
    torch = torch_refs.import_torch()
    nn, F = torch.nn, torch.nn.functional

    class ConvBNPReLU(nn.Module):
        def __init__(self, c_in, c_out, k, stride=1):
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c_out, eps=1e-3)
            self.act = nn.PReLU(c_out)

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class BNPReLU(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bn, self.act = nn.BatchNorm2d(c, eps=1e-3), nn.PReLU(c)

        def forward(self, x):
            return self.act(self.bn(x))

    class Wrapped(nn.Module):  # the official Conv / ChannelWiseConv wrappers (`.conv`)
        def __init__(self, conv):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x)

    def depthwise(c, dilation):
        return Wrapped(nn.Conv2d(c, c, 3, 1, dilation, dilation=dilation, groups=c, bias=False))

    class FGlo(nn.Module):
        def __init__(self, c, reduction):
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(c, c // reduction), nn.ReLU(),
                                    nn.Linear(c // reduction, c), nn.Sigmoid())

        def forward(self, x):
            return x * self.fc(x.mean((2, 3)))[:, :, None, None]

    class DownBlock(nn.Module):
        def __init__(self, c_in, c_out, dilation, reduction):
            super().__init__()
            self.conv1x1 = ConvBNPReLU(c_in, c_out, 3, 2)
            self.F_loc, self.F_sur = depthwise(c_out, 1), depthwise(c_out, dilation)
            self.bn, self.act = nn.BatchNorm2d(2 * c_out, eps=1e-3), nn.PReLU(2 * c_out)
            self.reduce = Wrapped(nn.Conv2d(2 * c_out, c_out, 1, bias=False))
            self.F_glo = FGlo(c_out, reduction)

        def forward(self, x):
            y = self.conv1x1(x)
            y = self.act(self.bn(torch.cat([self.F_loc(y), self.F_sur(y)], 1)))
            return self.F_glo(self.reduce(y))

    class CGBlock(nn.Module):
        def __init__(self, c, dilation, reduction):
            super().__init__()
            self.conv1x1 = ConvBNPReLU(c, c // 2, 1)
            self.F_loc, self.F_sur = depthwise(c // 2, 1), depthwise(c // 2, dilation)
            self.bn_prelu = BNPReLU(c)
            self.F_glo = FGlo(c, reduction)

        def forward(self, x):
            y = self.conv1x1(x)
            return x + self.F_glo(self.bn_prelu(torch.cat([self.F_loc(y), self.F_sur(y)], 1)))

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.level1_0 = ConvBNPReLU(3, 32, 3, 2)
            self.level1_1, self.level1_2 = ConvBNPReLU(32, 32, 3), ConvBNPReLU(32, 32, 3)
            self.b1 = BNPReLU(35)
            self.level2_0 = DownBlock(35, 64, 2, 8)
            self.level2 = nn.ModuleList(CGBlock(64, 2, 8) for _ in range(stage2_blocks - 1))
            self.bn_prelu_2 = BNPReLU(131)
            self.level3_0 = DownBlock(131, 128, 4, 16)
            self.level3 = nn.ModuleList(CGBlock(128, 4, 16) for _ in range(stage3_blocks - 1))
            self.bn_prelu_3 = BNPReLU(256)
            self.classifier = nn.Sequential(Wrapped(nn.Conv2d(256, num_classes, 1, bias=False)))

        def forward(self, image):
            half = F.avg_pool2d(image, 3, 2, 1)
            quarter = F.avg_pool2d(half, 3, 2, 1)
            y = self.level1_2(self.level1_1(self.level1_0(image)))
            first = self.level2_0(self.b1(torch.cat([y, half], 1)))
            y = first
            for block in self.level2:
                y = block(y)
            first = self.level3_0(self.bn_prelu_2(torch.cat([y, first, quarter], 1)))
            y = first
            for block in self.level3:
                y = block(y)
            y = self.classifier(self.bn_prelu_3(torch.cat([first, y], 1)))
            return F.interpolate(y, image.shape[2:], mode="bilinear", align_corners=False)

    return Reference()


def randomize_prelu(model, seed: int = 1):
    """PReLU slopes away from their 0.25 init, so a slope mapped to the wrong layer shows."""
    torch = torch_refs.import_torch()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.PReLU):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 0.5)
    return model


def test_reference_reimplementation_has_the_official_count():
    reference = official_cgnet(19)
    assert sum(p.numel() for p in reference.parameters()) == OFFICIAL_PARAMS_19_CLASSES


def check_parity(shape, stage2_blocks: int = 3, stage3_blocks: int = 21):
    """Converted from the official layout (with a DataParallel `module.` prefix), the logits
    equal the reference's within 1e-4 of their scale."""
    from segjax import convert  # pylint: disable=import-outside-toplevel

    torch = torch_refs.import_torch()
    torch.manual_seed(0)
    reference = randomize_prelu(torch_refs.randomize_bn(
        official_cgnet(7, stage2_blocks, stage3_blocks))).eval()
    state = {f"module.{k}": v for k, v in torch_refs.state_dict_numpy(reference).items()}
    model = registry.build({"name": "cgnet", "num_classes": 7, "stage2_blocks": stage2_blocks,
                            "stage3_blocks": stage3_blocks})
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    variables = jax.eval_shape(lambda v: model.init(jax.random.PRNGKey(0), v), x)
    variables, _ = convert.convert(state, variables,
                                   convert.get_mapping("cgnet_official").factory(), strict=True)
    ours = jax.jit(model.apply)(variables, x)["logits"]
    theirs = torch_refs.to_nhwc(torch_refs.run_nhwc(reference, x))
    assert torch_refs.max_rel_diff(ours, theirs) < 1e-4


@pytest.mark.parametrize("shape", [(1, 64, 64, 3), (2, 60, 90, 3)])
def test_a_short_cgnet_matches_the_official_layout(shape):
    """M2N3 (every kind of layer, few of them), at a square and an odd non-square size."""
    check_parity(shape, stage2_blocks=2, stage3_blocks=3)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 64, 64, 3), (2, 60, 90, 3)])
def test_cgnet_m3n21_matches_the_official_layout(shape):
    check_parity(shape)
