"""The device mesh and how arrays are laid out on it (training and inference alike).

One `jax.sharding.Mesh` over all devices (of all processes) with axes
('data', 'model'); `config.mesh.data = -1` puts every device not used by the
'model' axis on 'data'. The axes are `AxisType.Auto` (jax.make_mesh would make
them Explicit in this jax), so the train step is an ordinary `jax.jit` with
in/out shardings and XLA inserts the gradient all-reduce.

Batches are split over 'data' along their first axis; the train state is
replicated. Each process builds its share of the global batch from its own
numpy batch (`global_batch`): process p's rows are rows
[p * b, (p + 1) * b) of the global batch, which is what the data pipeline
delivers (the global batch of one process == the concatenation of the P
processes' batches).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "model")


def make_mesh(mesh_config, devices=None) -> Mesh:
    """Mesh ('data', 'model') of sizes (config.mesh.data, config.mesh.model)."""
    devices = list(jax.devices() if devices is None else devices)
    count = len(devices)
    data, model = int(mesh_config["data"]), int(mesh_config["model"])
    if model < 1 or data == 0 or data < -1:
        raise ValueError(f"config.mesh: sizes must be positive (data may be -1 for 'all the "
                         f"rest'), got data={data}, model={model}")
    if data == -1:
        if count % model:
            raise ValueError(f"config.mesh: model={model} does not divide the {count} devices")
        data = count // model
    if data * model != count:
        raise ValueError(f"config.mesh: data={data} x model={model} = {data * model} devices, "
                         f"but there are {count} devices; set config.mesh.data=-1 to use "
                         "all of them for the batch")
    grid = np.asarray(devices, dtype=object).reshape(data, model)
    return Mesh(grid, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _replicated_leaf(leaf, sharding: NamedSharding) -> jax.Array:
    value = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host (or single-device) values, identical on every process -> replicated global arrays."""
    sharding = replicated_sharding(mesh)
    return jax.tree_util.tree_map(lambda leaf: _replicated_leaf(leaf, sharding), tree)


def ensure_replicated(tree: Any, mesh: Mesh) -> Any:
    """`replicate`, leaving leaves that are already replicated over `mesh` as they are."""
    sharding = replicated_sharding(mesh)

    def put(leaf):
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        return _replicated_leaf(leaf, sharding)

    return jax.tree_util.tree_map(put, tree)


def same_on_all_processes(tree: Any) -> Any:
    """Process 0's values of `tree` on every process (a no-op with one process)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils
    return multihost_utils.broadcast_one_to_all(jax.tree_util.tree_map(np.asarray, tree))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    data = mesh.shape["data"]
    if global_batch_size % data:
        raise ValueError(f"config.data.batch_size={global_batch_size} is not divisible by the "
                         f"mesh's data axis ({data} devices); choose a multiple of {data}")


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's numpy batch -> global arrays sharded over 'data' (batch axis)."""
    sharding = batch_sharding(mesh)
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
        out[key] = jax.make_array_from_process_local_data(sharding, value, shape)
    return out


def local_value(array) -> np.ndarray:
    """The value of a replicated global array, read from this process's first shard."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return np.asarray(array.addressable_data(0))
    return np.asarray(jax.device_get(array))
