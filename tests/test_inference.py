"""Sliding window, blending, overlap-tile exactness, bounded memory, 3D, TTA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import evaluation, inference
from segjax.config import EvalOptions
from segjax.models import registry
from segjax.ops.resize import resize


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _tiny_unet(random_variables, rank=2, depth=2, width=4, padding="valid", num_classes=3,
               channels=1, size=92):
    model = registry.build({"name": "unet", "num_classes": num_classes, "width": width,
                            "depth": depth, "padding": padding})
    x = jnp.zeros((1,) + (size,) * rank + (channels,))
    return model, random_variables(model, x)


def _pixelwise(weights):
    """A 1x1-convolution 'model': logits = x @ weights, recording the shapes it is given."""
    calls = []
    matmul = jax.jit(lambda x: x @ weights)

    def predict_fn(batch):
        calls.append(batch.shape)
        return np.asarray(matmul(batch))

    return predict_fn, calls


@pytest.mark.parametrize("height,width", [(104, 104), (100, 120)])
def test_overlap_tile_valid_unet_equals_whole_image(height, width, random_variables):
    model, variables = _tiny_unet(random_variables)
    predict_fn = evaluation.make_predict_fn(model, variables)
    image = np.random.default_rng(0).normal(size=(height, width, 1)).astype(np.float32)
    tiled = inference.sliding_window_predict(predict_fn, image, tile=(92, 92), batch_size=2)
    # Whole image at once: the same 20-pixel mirrored context, one forward pass.
    padded = np.pad(image, [(20, 20), (20, 20), (0, 0)], mode="reflect")
    whole = _softmax(predict_fn(padded[None])[0])
    assert tiled.shape == (height, width, 3) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_overlap_tile_3d_valid_unet_equals_whole_volume(random_variables):
    model, variables = _tiny_unet(random_variables, rank=3, depth=1, width=2, num_classes=2, size=28)
    predict_fn = evaluation.make_predict_fn(model, variables)
    assert inference.output_margin(predict_fn, (28, 28, 28), 1) == (8, 8, 8)
    volume = np.random.default_rng(1).normal(size=(24, 24, 24, 1)).astype(np.float32)
    tiled = inference.sliding_window_predict(predict_fn, volume, tile=(28, 28, 28), batch_size=4)
    whole = _softmax(predict_fn(np.pad(volume, [(8, 8)] * 3 + [(0, 0)], mode="reflect")[None])[0])
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_same_padding_unet_small_image_is_padded_and_cropped_back(random_variables):
    model, variables = _tiny_unet(random_variables, padding="same", size=32)
    predict_fn = evaluation.make_predict_fn(model, variables)
    image = np.random.default_rng(2).normal(size=(20, 27, 1)).astype(np.float32)
    probs = inference.sliding_window_predict(predict_fn, image, tile=(32, 32))
    padded = np.pad(image, [(0, 12), (0, 5), (0, 0)], mode="reflect")
    expected = _softmax(predict_fn(padded[None])[0])[:20, :27]
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_blending_by_hand():
    """Two 1x8 tiles over a 1x12 image, each predicting its own constant distribution."""
    dists = np.array([[0.8, 0.2], [0.3, 0.7]], np.float32)
    counter = iter(range(10))

    def predict_fn(batch):
        index = next(counter) if batch.shape[0] == 1 else 0
        return np.broadcast_to(np.log(dists[index % 2]), batch.shape[:-1] + (2,))

    predict_fn.output_shape = lambda shape: tuple(shape[:-1]) + (2,)
    image = np.zeros((1, 12, 1), np.float32)
    average = inference.sliding_window_predict(predict_fn, image, tile=(1, 8), overlap=0.5)
    np.testing.assert_allclose(average[0, :4], np.tile(dists[0], (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(average[0, 4:8], np.tile(dists.mean(0), (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(average[0, 8:], np.tile(dists[1], (4, 1)), rtol=1e-6)

    gaussian = inference.sliding_window_predict(predict_fn, image, tile=(1, 8), overlap=0.5,
                                                blend="gaussian")
    axis = np.exp(-0.5 * ((np.arange(8) - 3.5) / 1.0) ** 2)
    axis = axis / axis.max()
    w0, w1 = axis[4:], axis[:4]        # tile 0 at its right half, tile 1 at its left half
    expected = (w0[:, None] * dists[0] + w1[:, None] * dists[1]) / (w0 + w1)[:, None]
    np.testing.assert_allclose(gaussian[0, 4:8], expected, rtol=1e-5)
    np.testing.assert_allclose(gaussian[0, :4], np.tile(dists[0], (4, 1)), rtol=1e-6)


def test_large_image_bounded_memory_fixed_batches():
    """2048x4096: the device only ever sees (5, 512, 512, 3) batches; host sums in float32."""
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(3, 2)).astype(np.float32)
    predict_fn, calls = _pixelwise(weights)
    image = rng.normal(size=(2048, 4096, 3)).astype(np.float32)
    probs = inference.sliding_window_predict(predict_fn, image, tile=(512, 512), batch_size=5,
                                             overlap=0.25, blend="gaussian")
    # 384-pixel stride: 5 x 11 = 55 tiles in 11 calls, after one probe of the output shape.
    assert set(calls) == {(5, 512, 512, 3)}
    assert len(calls) == 12
    assert probs.shape == (2048, 4096, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs[::7, ::7], _softmax(image[::7, ::7] @ weights), atol=1e-5)


def test_pixelwise_3d_volume_with_gaussian_overlap():
    rng = np.random.default_rng(4)
    weights = rng.normal(size=(2, 4)).astype(np.float32)
    predict_fn, calls = _pixelwise(weights)
    volume = rng.normal(size=(9, 20, 13, 2)).astype(np.float32)
    probs = inference.sliding_window_predict(predict_fn, volume, tile=(4, 8, 8), overlap=0.5,
                                             batch_size=3, blend="gaussian", num_classes=4)
    assert all(shape == (3, 4, 8, 8, 2) for shape in calls)
    np.testing.assert_allclose(probs, _softmax(volume @ weights), atol=1e-5)


def test_flip_tta_unflips():
    """A 'model' that ignores its input and predicts a left-to-right ramp."""

    def predict_fn(batch):
        ramp = np.linspace(-2, 2, batch.shape[2], dtype=np.float32)
        logits = np.zeros(batch.shape[:-1] + (2,), np.float32)
        logits[..., 0] = ramp
        return logits

    image = np.zeros((6, 10, 1), np.float32)
    plain = inference.tta_predict(predict_fn, image)
    flipped = inference.tta_predict(predict_fn, image, flip=True)
    assert not np.allclose(plain, plain[:, ::-1])
    np.testing.assert_allclose(flipped, flipped[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(flipped, (plain + plain[:, ::-1]) / 2, atol=1e-6)


def test_multiscale_tta_shapes_and_average():
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(1, 3)).astype(np.float32)
    predict_fn, calls = _pixelwise(weights)
    image = np.full((40, 60, 1), 0.7, np.float32)
    probs = inference.tta_predict(predict_fn, image, scales=(0.5, 1.0, 1.5), flip=True)
    assert sorted(calls) == sorted([(1, 20, 30, 1)] * 2 + [(1, 40, 60, 1)] * 2
                                   + [(1, 60, 90, 1)] * 2)
    # A constant image gives the same probabilities at every scale.
    np.testing.assert_allclose(probs, np.broadcast_to(_softmax(0.7 * weights[0]), probs.shape),
                               atol=1e-6)


@pytest.mark.parametrize("size", [(13, 29), (64, 48)])
def test_resize_linear_matches_layers_resize(size):
    array = np.random.default_rng(6).normal(size=(32, 40, 3)).astype(np.float32)
    ours = inference.resize_linear(array, size)
    reference = np.asarray(resize(jnp.asarray(array)[None], size))[0]
    np.testing.assert_allclose(ours, reference, atol=3e-5)


def test_bad_options_raise_clear_errors():
    predict_fn, _ = _pixelwise(np.ones((1, 2), np.float32))
    image = np.zeros((16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="eval.blend"):
        inference.sliding_window_predict(predict_fn, image, tile=(8, 8), blend="median")
    with pytest.raises(ValueError, match="eval.tile"):
        inference.sliding_window_predict(predict_fn, image, tile=(8, 8, 8))
    with pytest.raises(ValueError, match="eval.overlap"):
        inference.sliding_window_predict(predict_fn, image, tile=(8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="num_classes=3"):
        inference.sliding_window_predict(predict_fn, image, tile=(8, 8), num_classes=3)
    with pytest.raises(ValueError, match="set eval.tile"):
        inference.sliding_window_predict(lambda x: np.zeros((1, 8, 8, 2), np.float32), image)
    with pytest.raises(ValueError, match="eval.scales"):
        inference.tta_predict(predict_fn, image, scales=(0.0,))


@pytest.mark.parametrize("length,low,high", [(5, -7, 14), (1, -3, 4), (2, -5, 7), (9, -2, 11)])
def test_reflect_indices_match_numpy_pad(length, low, high):
    values = np.arange(length)
    padded = np.pad(values, (-low, high - length), mode="reflect") if length > 1 else \
        np.zeros(high - low, int)
    np.testing.assert_array_equal(values[inference._reflect(np.arange(low, high), length)], padded)


def _data_config(mean=0.3, std=0.2):
    from segjax.config import base_config
    config = base_config().data
    config.mean, config.std = (mean,), (std,)
    return config


@pytest.mark.parametrize("shape,tile,overlap,batch,flip,blend", [
    ((131, 97), (92, 92), 0.5, 3, True, "gaussian"),   # valid convs: 20-px margins, batches span rows
    ((40, 41), (92, 92), 0.0, 1, False, "average"),    # image smaller than one output tile
    ((200, 60), (92, 92), 0.25, 2, True, "average"),
])
def test_streamed_labels_equal_the_whole_map_path(random_variables, shape, tile, overlap, batch,
                                                  flip, blend):
    model, variables = _tiny_unet(random_variables)
    predict_fn = evaluation.make_predict_fn(model, variables)
    image = np.random.default_rng(3).integers(0, 256, size=(*shape, 1)).astype(np.uint8)
    options = EvalOptions(tile=tile, overlap=overlap, batch_size=batch, flip=flip,
                                    blend=blend)
    data = _data_config()
    reference = inference.predict_image(predict_fn, image, data, options, 3)
    labels, probs = inference.predict_labels(predict_fn, image, data, options, 3,
                                             probabilities=True)
    assert labels.dtype == np.uint8 and labels.shape == shape
    np.testing.assert_array_equal(labels, reference.argmax(-1))
    np.testing.assert_array_equal(probs, reference.astype(np.float16))
    bands = list(inference.stream_probabilities(predict_fn, image, data, options, 3))
    assert bands[0][0] == 0 and bands[-1][1] == shape[0]
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    np.testing.assert_array_equal(np.concatenate([band for _, _, band in bands]), reference)


def test_streamed_tiles_are_zscored_with_the_whole_images_statistics(random_variables):
    """data.normalization='zscore': a streamed tile is normalised with the statistics of the
    whole image (as the whole-map path and training do), never with its own."""
    model, variables = _tiny_unet(random_variables)
    predict_fn = evaluation.make_predict_fn(model, variables)
    image = np.random.default_rng(5).integers(1, 256, size=(131, 97, 1)).astype(np.float32)
    image[:, :30] = 0                                   # background outside the 'nonzero' mask
    data = _data_config()
    data.normalization = "zscore"
    options = EvalOptions(tile=(92, 92), overlap=0.5, batch_size=3, flip=True)
    reference = inference.predict_image(predict_fn, image, data, options, 3)
    bands = list(inference.stream_probabilities(predict_fn, image, data, options, 3))
    np.testing.assert_array_equal(np.concatenate([band for _, _, band in bands]), reference)


def test_other_options_fall_back_to_whole_maps(random_variables):
    model, variables = _tiny_unet(random_variables, padding="same", size=32)
    predict_fn = evaluation.make_predict_fn(model, variables)
    image = np.random.default_rng(4).integers(0, 256, size=(48, 40, 1)).astype(np.uint8)
    options = EvalOptions(tile=(32, 32), overlap=0.5, scales=(0.75, 1.0))
    reference = inference.predict_image(predict_fn, image, _data_config(), options, 3)
    labels, _ = inference.predict_labels(predict_fn, image, _data_config(), options, 3)
    np.testing.assert_array_equal(labels, reference.argmax(-1))


def test_sigmoid_head_streams_thresholded_masks(random_variables):
    """A sigmoid head: probabilities are one sigmoid per channel (blended and flipped like
    softmax ones) and labels a (H, W, K) stack of per-class thresholded masks, the same in
    the streamed and the whole-map paths. Tiles start at multiples of 4 (the valid U-Net's
    pooling grid), so tiling equals one whole-image pass."""
    model, variables = _tiny_unet(random_variables, num_classes=2)
    predict_fn = evaluation.make_predict_fn(model, variables)
    image = np.random.default_rng(5).integers(0, 256, size=(104, 100, 1)).astype(np.uint8)
    data = _data_config()
    streamed = inference.EvalOptions(tile=(92, 92), batch_size=3, flip=True,
                                     activation="sigmoid", thresholds=(0.45, 0.55))
    probs = inference.predict_image(predict_fn, image, data, streamed, 2)
    normalised = (image.astype(np.float32) / 255 - 0.3) / 0.2
    whole = 1 / (1 + np.exp(-predict_fn(np.pad(normalised, [(20, 20), (20, 20), (0, 0)],
                                               mode="reflect")[None])[0]))
    flipped = 1 / (1 + np.exp(-predict_fn(np.pad(normalised[:, ::-1], [(20, 20), (20, 20),
                                                                       (0, 0)],
                                                 mode="reflect")[None])[0]))[:, ::-1]
    np.testing.assert_allclose(probs, (whole + flipped) / 2, atol=1e-5)
    labels, _ = inference.predict_labels(predict_fn, image, data, streamed, 2)
    assert labels.shape == (104, 100, 2) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probs > np.array([0.45, 0.55]))
    whole_map = inference.EvalOptions(tile=(92, 92), overlap=0.5, scales=(1.0, 0.75),
                                      activation="sigmoid")
    labels, _ = inference.predict_labels(predict_fn, image, data, whole_map, 2)
    np.testing.assert_array_equal(
        labels, inference.predict_image(predict_fn, image, data, whole_map, 2) > 0.5)
    with pytest.raises(ValueError, match="does not apply to a sigmoid"):
        inference.EvalOptions(activation="sigmoid", crf=True)
    with pytest.raises(ValueError, match="one value or one per class"):
        streamed.__class__(activation="sigmoid", thresholds=(0.1, 0.2, 0.3)).class_thresholds(2)
