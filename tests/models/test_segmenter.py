"""The shared Segmenter pieces: the conv head's initialisation."""

import jax
import jax.numpy as jnp
import numpy as np

from segjax.models.segmenter import SegmentationHead


def test_conv_head_is_glorot_uniform_so_initial_logits_are_order_one():
    fan_in, classes = 256, 11
    head = SegmentationHead(num_classes=classes)
    features = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, fan_in))
    variables = head.init(jax.random.PRNGKey(1), features)
    kernel = np.asarray(variables["params"]["classifier"]["kernel"])
    bound = np.sqrt(6.0 / (fan_in + classes))
    assert kernel.shape == (1, 1, fan_in, classes)
    assert np.abs(kernel).max() <= bound
    # Uniform on [-b, b] has std b / sqrt(3) = 0.0865 here; He fan-out would give 0.43.
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.05)
    np.testing.assert_array_equal(variables["params"]["classifier"]["bias"], np.zeros(classes))
    logits = head.apply(variables, features)
    assert 0.7 < float(jnp.std(logits)) < 1.7
