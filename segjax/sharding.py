"""The device mesh and how arrays are laid out on it (training and inference alike).

One `jax.sharding.Mesh` over all devices (of all processes) with axes
('data', 'model'); `config.mesh.data = -1` puts every device not used by the
'model' axis on 'data'. The axes are `AxisType.Auto` (jax.make_mesh would make
them Explicit in this jax), so the train step is an ordinary `jax.jit` with
in/out shardings and XLA inserts the gradient all-reduce.

Batches are split over 'data' along their first axis. Each process builds its
share of the global batch from its own numpy batch (`global_batch`): process
p's rows are rows [p * b, (p + 1) * b) of the global batch, which is what the
data pipeline delivers (the global batch of one process == the concatenation
of the P processes' batches).

The train state (parameters, optimiser state, batch statistics) is
replicated by default. `config.mesh.param_sharding = "fsdp"` shards it
instead (fully sharded data parallel, ZeRO-3): every leaf of at least
`config.mesh.fsdp_min_size` elements is split along its largest axis that
the `config.mesh.fsdp_axes` (default 'data', the batch's own axis) divide,
so each device stores 1/N of the state. Those axes are storage only: the
train step all-gathers the parameters before using them and
reduce-scatters the gradients back (`compute_shardings`), so the step computes
what the replicated step computes. `config.mesh.param_rules` place leaves
explicitly, first match wins:

    config.mesh.param_rules = (
        (r"encoder/.*kernel$", (None, None, None, "data")),  # one entry per array axis
        (r"/bn/", "replicated"),
        (r"decoder/", "fsdp"),           # the default FSDP rule for these leaves
    )

A rule's regular expression is searched in the leaf's path, 'params/...',
'opt_state/0/mu/...' (so one rule places a parameter and its optimiser
moments alike), 'batch_stats/...'. Axes of a rule that are not FSDP axes
(e.g. 'model') stay sharded in the step too, and XLA partitions the
computation along them (tensor parallelism).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

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


def _placed_leaf(leaf, sharding: NamedSharding) -> jax.Array:
    """A host (or any-device) value, identical on every process -> a global array."""
    value = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


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
    """The whole value of a global array on every process (sharded ones are gathered first)."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        if not array.sharding.is_fully_replicated:
            array = _reshard(replicated_sharding(array.sharding.mesh))(array)
        return np.asarray(array.addressable_data(0))
    return np.asarray(jax.device_get(array))


_RESHARDS: dict = {}


def _reshard(sharding: NamedSharding):
    """A jitted identity whose output has `sharding` (XLA moves the data between devices)."""
    if sharding not in _RESHARDS:
        _RESHARDS[sharding] = jax.jit(lambda x: x, out_shardings=sharding)
    return _RESHARDS[sharding]


# ------------------------------------------------------------------------------------------
# Sharding the train state (FSDP and explicit rules).

PARAM_SHARDINGS = ("replicated", "fsdp")


def _axes_size(mesh: Mesh, axes: Sequence[str]) -> int:
    return int(np.prod([mesh.shape[axis] for axis in axes]))


def _check_axes(axes, mesh: Mesh, where: str) -> None:
    for axis in axes:
        if axis not in mesh.shape:
            raise ValueError(f"{where}: unknown mesh axis {axis!r}; the mesh's axes are "
                             f"{', '.join(mesh.axis_names)}")


def shards_state(mesh_config) -> bool:
    """Whether config.mesh lays the train state out sharded (FSDP or explicit rules)."""
    get = mesh_config.get if hasattr(mesh_config, "get") else (lambda key, default: default)
    return get("param_sharding", "replicated") == "fsdp" or bool(get("param_rules", ()))


def fsdp_axes(mesh_config) -> tuple[str, ...]:
    """The storage-only axes of config.mesh ('data' unless fsdp_axes says otherwise)."""
    axes = mesh_config.get("fsdp_axes", ("data",)) if hasattr(mesh_config, "get") else ("data",)
    return (axes,) if isinstance(axes, str) else tuple(axes)


def fsdp_spec(shape: Sequence[int], mesh: Mesh, axes: Sequence[str], min_size: int) -> P:
    """The default FSDP placement: the largest axis the FSDP axes divide, or replicated."""
    count = _axes_size(mesh, axes)
    if count == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    candidates = [dim for dim, size in enumerate(shape) if size % count == 0]
    if not candidates:
        return P()
    dim = max(candidates, key=lambda d: (shape[d], d))  # the largest; ties: the last
    entry = axes[0] if len(axes) == 1 else tuple(axes)
    return P(*([None] * dim + [entry] + [None] * (len(shape) - dim - 1)))


def _rule_spec(spec, shape, mesh: Mesh, where: str, default) -> P:
    if isinstance(spec, str):
        if spec == "replicated":
            return P()
        if spec == "fsdp":
            return default()
        raise ValueError(f"{where}: expected a tuple of mesh axes (one per array axis), "
                         f"'fsdp' or 'replicated', got {spec!r}")
    spec = tuple(spec)
    if len(spec) != len(shape):
        raise ValueError(f"{where}: {len(spec)} entries for an array of shape {tuple(shape)}")
    for size, entry in zip(shape, spec):
        axes = () if entry is None else ((entry,) if isinstance(entry, str) else tuple(entry))
        _check_axes(axes, mesh, where)
        if size % _axes_size(mesh, axes):
            raise ValueError(f"{where}: axis of size {size} is not divisible by mesh axes "
                             f"{axes} ({_axes_size(mesh, axes)} devices)")
    return P(*spec)


def leaf_spec(path: str, shape: Sequence[int], mesh: Mesh, mesh_config) -> P:
    """The PartitionSpec of one train-state leaf under config.mesh (see the module docstring)."""
    get = mesh_config.get if hasattr(mesh_config, "get") else (lambda key, default: default)
    mode = get("param_sharding", "replicated")
    if mode not in PARAM_SHARDINGS:
        raise ValueError(f"config.mesh.param_sharding={mode!r}: expected one of "
                         f"{', '.join(PARAM_SHARDINGS)}")
    axes = fsdp_axes(mesh_config)
    _check_axes(axes, mesh, "config.mesh.fsdp_axes")
    min_size = int(get("fsdp_min_size", 0))
    default = lambda: fsdp_spec(shape, mesh, axes, min_size)  # noqa: E731
    if len(shape) == 0:
        return P()
    for index, rule in enumerate(get("param_rules", ()) or ()):
        if len(rule) != 2:
            raise ValueError(f"config.mesh.param_rules[{index}]: expected (regex, spec), "
                             f"got {rule!r}")
        pattern, spec = rule
        if re.search(pattern, path):
            return _rule_spec(spec, shape, mesh,
                              f"config.mesh.param_rules[{index}] ({pattern!r} at {path})",
                              default)
    return default() if mode == "fsdp" else P()


def tree_shardings(tree: Any, mesh: Mesh, mesh_config) -> Any:
    """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs) by config.mesh."""
    def sharding_of(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")  # 'params/encoder/...'
        return NamedSharding(mesh, leaf_spec(name, np.shape(leaf), mesh, mesh_config))

    return jax.tree_util.tree_map_with_path(sharding_of, tree)


def compute_shardings(shardings: Any, mesh_config) -> Any:
    """The shardings the step computes with: the FSDP axes dropped (gathered) from each spec."""
    storage = set(fsdp_axes(mesh_config))

    def without_storage(entry):
        if entry is None:
            return None
        axes = (entry,) if isinstance(entry, str) else tuple(entry)
        kept = tuple(axis for axis in axes if axis not in storage)
        return None if not kept else (kept[0] if len(kept) == 1 else kept)

    return jax.tree_util.tree_map(
        lambda s: NamedSharding(s.mesh, P(*map(without_storage, s.spec))), shardings)


def place(tree: Any, shardings: Any) -> Any:
    """Values identical on every process -> global arrays laid out as `shardings`.

    A leaf that is already laid out as `sharding` is kept (given `sharding`
    itself, on its own process: a single-device array's type names no mesh,
    unlike the outputs of a jit over `shardings`, and a train step over it
    would be traced again at its second call); one on the same devices is
    resharded on the device (no host copy), so sharded values of several
    processes move too.
    """
    def put(leaf, sharding):
        if isinstance(leaf, jax.Array):
            if leaf.sharding == sharding:
                return leaf
            if leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
                # Already laid out so: only its type changes (no copy, nothing compiled).
                return jax.device_put(leaf, sharding) if leaf.is_fully_addressable else leaf
            if leaf.sharding.device_set == sharding.device_set:
                return _reshard(sharding)(leaf)
        return _placed_leaf(leaf, sharding)

    return jax.tree_util.tree_map(put, tree, shardings)


def bytes_per_device(tree: Any, shardings: Any | None = None) -> int:
    """The largest number of bytes any one device holds of `tree`.

    `tree` holds global arrays (their own shardings are read), or shapes
    (ShapeDtypeStructs / arrays) with `shardings` saying how they would be laid out.
    """
    totals: dict = {}
    leaves = jax.tree_util.tree_leaves(tree)
    placements = (jax.tree_util.tree_leaves(shardings) if shardings is not None
                  else [leaf.sharding for leaf in leaves])
    for leaf, sharding in zip(leaves, placements):
        shard = sharding.shard_shape(tuple(np.shape(leaf)))
        size = int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
        for device in sharding.device_set:
            totals[device] = totals.get(device, 0) + size
    return max(totals.values()) if totals else 0
