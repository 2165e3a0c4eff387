"""Resizing (segjax.ops.resize) against jax.image.resize and PyTorch's interpolate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.ops.resize import resize


@pytest.mark.parametrize("shape, size", [((2, 5, 7, 3), (20, 14)), ((1, 4, 4, 2), (4, 12)),
                                         ((1, 3, 4, 5, 2), (6, 8, 5)), ((1, 1, 3, 2), (4, 6))])
def test_integer_upsampling_matches_jax_image_resize_and_torch(shape, size):
    """resize's integer-factor path (phases of neighbour mixes) against jax.image.resize
    and PyTorch's interpolate(align_corners=False): values and gradients."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    full = (shape[0],) + size + (shape[-1],)
    expected = jax.image.resize(x, full, method="linear", antialias=False)
    np.testing.assert_allclose(resize(x, size), expected, atol=1e-6)
    cotangent = jnp.asarray(rng.standard_normal(full), jnp.float32)
    ours = jax.grad(lambda x: jnp.sum(resize(x, size) * cotangent))(x)
    theirs = jax.grad(lambda x: jnp.sum(jax.image.resize(x, full, "linear", antialias=False)
                                        * cotangent))(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    if len(size) == 2:
        torch_refs = pytest.importorskip("tests.torch_refs")
        torch = torch_refs.import_torch()
        reference = torch.nn.functional.interpolate(torch_refs.to_nchw(np.asarray(x)), size=size,
                                                    mode="bilinear", align_corners=False)
        np.testing.assert_allclose(resize(x, size), torch_refs.to_nhwc(reference),
                                   atol=1e-5)
