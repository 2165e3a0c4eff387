"""segjax.sharding.place: placed values have the types a jit over the mesh returns."""

import jax
import jax.numpy as jnp
import numpy as np

from segjax import sharding


def test_a_step_over_placed_values_is_traced_once():
    mesh = sharding.make_mesh({"data": -1, "model": 1})
    replicated = sharding.replicated_sharding(mesh)
    on_one_device = {"w": jnp.ones((4, 3)), "b": jnp.zeros((3,))}   # what a jitted init returns
    state = sharding.place(on_one_device, {"w": replicated, "b": replicated})
    traces = []

    def step(state):
        traces.append(1)
        return jax.tree_util.tree_map(lambda x: x * 2.0, state)

    compiled = jax.jit(step, out_shardings={"w": replicated, "b": replicated})
    for _ in range(3):
        state = compiled(state)
    assert len(traces) == 1
    np.testing.assert_array_equal(np.asarray(state["w"]), np.full((4, 3), 8.0))
    assert state["w"].sharding == replicated


def test_a_leaf_with_the_target_sharding_is_kept():
    mesh = sharding.make_mesh({"data": -1, "model": 1})
    replicated = sharding.replicated_sharding(mesh)
    leaf = jax.device_put(np.arange(6.0), replicated)
    assert sharding.place({"x": leaf}, {"x": replicated})["x"] is leaf
