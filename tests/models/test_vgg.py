"""VGG-16 encoder: Caffe pooling, feature strides, exact parameter counts, torchvision parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models import registry
from segjax.models.encoders import vgg
from segjax.models.segmenter import count_params

# VGG-16 conv1_1..conv5_3 (3x3 kernels + biases), layer by layer:
# 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2 x 590,080 + 1,180,160
# + 2 x 2,359,808 + 3 x 2,359,808 = 14,714,688 (= torchvision vgg16().features).
VGG16_CONV_PARAMS = 14_714_688
# FCN fc6: 7 x 7 x 512 x 4096 + 4096; fc7: 4096 x 4096 + 4096 (torchvision's
# classifier.0 / classifier.3 Linear layers reshaped).
FCN_FC_PARAMS = 102_764_544 + 16_781_312
# LargeFOV fc6: 3 x 3 x 512 x 1024 + 1024; fc7: 1024 x 1024 + 1024.
LARGEFOV_FC_PARAMS = 4_719_616 + 1_049_600


def param_count(module, shape=(1, 64, 64, 3)):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return count_params(jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v), x))


@pytest.mark.parametrize("fc, expected", [(None, VGG16_CONV_PARAMS),
                                          ("fcn", VGG16_CONV_PARAMS + FCN_FC_PARAMS),
                                          ("largefov", VGG16_CONV_PARAMS + LARGEFOV_FC_PARAMS)])
def test_parameter_counts(fc, expected):
    shape = (1, 224, 224, 3) if fc == "fcn" else (1, 64, 64, 3)
    assert param_count(vgg.VGG16(fc=fc), shape) == expected


@pytest.mark.parametrize("size, window, stride, padding", [
    (7, 2, 2, 0), (8, 2, 2, 0), (9, 3, 2, 1), (10, 3, 2, 1), (6, 3, 1, 1), (5, 3, 2, 0)])
def test_caffe_max_pool_matches_torch_ceil_mode(size, window, stride, padding):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(size).normal(size=(1, size, size + 1, 3)).astype(np.float32)
    expected = torch.nn.functional.max_pool2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), window, stride, padding,
        ceil_mode=True).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(np.asarray(vgg.caffe_max_pool(jnp.asarray(x), window, stride,
                                                                 padding)), expected)


def test_caffe_max_pool_by_hand():
    # ceil((5 - 2) / 2) + 1 = 3 windows: [1 2] [3 4] [5]; the last is half outside.
    x = jnp.arange(1.0, 6.0).reshape(1, 5, 1, 1)
    assert vgg.caffe_max_pool(x, 2, 2, 0)[0, :, 0, 0].tolist() == [2.0, 4.0, 5.0]
    # 3x3 stride 2 pad 1 over 1..4: [-, 1, 2] [2, 3, 4] [4, -, -].
    x = jnp.arange(1.0, 5.0).reshape(1, 4, 1, 1)
    assert vgg.caffe_max_pool(x, 3, 2, 1)[0, :, 0, 0].tolist() == [2.0, 4.0, 4.0]


def feature_shapes(encoder, shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda v: encoder.init(jax.random.PRNGKey(0), v), x)
    features = jax.eval_shape(lambda v, x: encoder.apply(v, x), variables, x)
    return {stride: f.shape for stride, f in features.items()}


def test_feature_strides_and_deeplab_variant():
    assert feature_shapes(vgg.VGG16(), (1, 64, 96, 3)) == {
        2: (1, 32, 48, 64), 4: (1, 16, 24, 128), 8: (1, 8, 12, 256), 16: (1, 4, 6, 512),
        32: (1, 2, 3, 512)}
    # DeepLab: 3x3/2 pad-1 Caffe pooling on 321 -> 161 -> 81 -> 41, then stride 1.
    # Keys are nominal strides: pool4 (16) and fc7 (32) stay at stride 8.
    assert feature_shapes(vgg.VGG16(output_stride=8, fc="largefov"), (1, 321, 321, 3)) == {
        2: (1, 161, 161, 64), 4: (1, 81, 81, 128), 8: (1, 41, 41, 256),
        16: (1, 41, 41, 512), 32: (1, 41, 41, 1024)}
    # FCN: conv1_1 padded by 100, unpadded 7x7 fc6: (64 + 198) / 32 -> 9 -> 3.
    shapes = feature_shapes(vgg.VGG16(fc="fcn", input_padding=100), (1, 64, 64, 3))
    assert shapes[8] == (1, 33, 33, 256) and shapes[32] == (1, 3, 3, 4096)


def conv_dilations(module, shape):
    """rhs_dilation of every convolution in the traced forward pass, in order."""
    x = jnp.zeros(shape)
    variables = jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v), x)
    jaxpr = jax.make_jaxpr(lambda v, x: module.apply(v, x))(variables, x)
    return [eqn.params["rhs_dilation"][0] for eqn in jaxpr.jaxpr.eqns
            if eqn.primitive.name == "conv_general_dilated"]


def test_deeplab_variant_dilates_conv5_by_two_and_fc6_by_twelve(native_conv):
    assert conv_dilations(vgg.VGG16(), (1, 32, 32, 3)) == [1] * 13
    assert conv_dilations(vgg.VGG16(output_stride=8, fc="largefov"), (1, 33, 33, 3)) == (
        [1] * 10 + [2] * 3 + [12, 1])
    # Output stride 16: pool5 has stride 1, so FCN's fc6 is dilated by 2.
    assert conv_dilations(vgg.VGG16(output_stride=16, fc="fcn", input_padding=100),
                          (1, 32, 32, 3))[-2:] == [2, 1]


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="output_stride must be one of"):
        vgg.VGG16(output_stride=4).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="fc must be one of"):
        vgg.VGG16(fc="fc8").init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


def test_registered():
    assert isinstance(registry.build_part("encoder", {"name": "vgg16"}), vgg.VGG16)
