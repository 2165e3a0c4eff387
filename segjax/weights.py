"""Weights on disk: the variables format, reading any checkpoint, init_from, inference restore.

This module is what inference, export and conversion need of checkpoints, and
it never imports `segjax.train`; training's own checkpoints (train state +
data iterator) are in `segjax.train.checkpoint`, which builds on it.

Plain variables (`save_variables` / `load_variables`): an Orbax checkpoint
directory holding `{'params': ..., 'batch_stats': ...}` plus a JSON metadata
dict (by convention 'model': the config.model dict). The PyTorch weight
converters write these; `config.model.init_from` and `restore_for_inference`
read them. Written atomically (complete on disk before it replaces an older
one), readable without building the model.

The layout of a training workdir (`CHECKPOINTS_DIR`/<step>/{state,data,meta},
`BEST_DIR`/`BEST_FILE`, `CONFIG_FILE`) is fixed here, so that
`read_checkpoint(path)` reads variables from a variables file, a workdir, a
checkpoints dir or a step dir (any topology), `load_pretrained` merges them
into a fresh initialisation (init_from), and `restore_for_inference` rebuilds
the model from the run's stored config.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
BEST_FILE = "variables"
CONFIG_FILE = "config.json"


def orbax_checkpoint():
    import orbax.checkpoint as ocp  # heavy; only the training paths need it
    return ocp


VARIABLES_FORMAT = "segjax.variables/1"


def _to_numpy_tree(tree):
    if isinstance(tree, Mapping):
        return {str(key): _to_numpy_tree(value) for key, value in tree.items()}
    return np.asarray(jax.device_get(tree))


def is_variables_checkpoint(path) -> bool:
    """True when `path` is a directory written by `save_variables`."""
    path = Path(path)
    return (path / "variables").is_dir() and (path / "metadata").is_dir()


def save_variables(path, variables: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
                   ) -> Path:
    """Writes `variables` ({'params': ..., 'batch_stats': ...}) and `metadata` to `path`.

    `path` becomes an Orbax checkpoint directory (items "variables" and
    "metadata"). `metadata` must be JSON-serialisable; by convention it holds
    'model' (the config.model dict) so that `restore_for_inference` can rebuild
    the model. Replacing an existing checkpoint is atomic for readers: the new
    one is complete on disk before the old one is moved aside and removed.
    """
    path = Path(path).absolute()
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError(f"save_variables({path}): expected a mapping with a 'params' entry "
                         f"(and optionally 'batch_stats'), got {type(variables).__name__} with "
                         f"keys {list(variables) if isinstance(variables, Mapping) else '-'}")
    ocp = orbax_checkpoint()
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    stale = path.with_name(f".{path.name}.old-{os.getpid()}")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(fresh, ocp.args.Composite(
            variables=ocp.args.StandardSave(_to_numpy_tree(variables)),
            metadata=ocp.args.JsonSave({"format": VARIABLES_FORMAT,
                                        "metadata": dict(metadata or {})})), force=True)
    if path.exists():
        os.replace(path, stale)
    os.replace(fresh, path)
    if stale.exists():
        shutil.rmtree(stale)
    return path


def load_variables(path) -> tuple[dict, dict]:
    """Reads a checkpoint written by `save_variables`: (variables, metadata)."""
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"load_variables: no variables checkpoint at {path}")
    if not is_variables_checkpoint(path):
        raise ValueError(f"load_variables: {path} is not a segjax variables checkpoint "
                         "(expected an Orbax directory with 'variables' and 'metadata' items, "
                         "as written by save_variables or python -m segjax.convert)")
    meta, tree = _restore_on_one_device(path, "variables", "metadata")
    if meta.get("format") != VARIABLES_FORMAT:
        raise ValueError(f"load_variables: {path} has format {meta.get('format')!r}, "
                         f"expected {VARIABLES_FORMAT!r}")
    return _to_numpy_tree(tree), dict(meta["metadata"])


def _restore_on_one_device(directory: Path, tree_item: str, json_item: str,
                           keys: tuple[str, ...] | None = None,
                           other_items: dict | None = None) -> tuple[dict, dict]:
    """(json item, array tree item) of an Orbax composite checkpoint, arrays on one device.

    Read through the checkpoint's top level (where Orbax keeps its metadata file)
    with a target on this process's first device, so that checkpoints written by
    another topology (a pod, several processes) read on one machine. `keys`
    restores only those top-level entries of the tree; `other_items` names the
    handlers of items that are there but not read (Orbax warns about any item
    it has no handler for).
    """
    ocp = orbax_checkpoint()
    handler = ocp.CompositeCheckpointHandler(
        **{tree_item: ocp.PyTreeCheckpointHandler(), json_item: ocp.JsonCheckpointHandler()},
        **(other_items or {}))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.Checkpointer(handler) as checkpointer:
        stored = dict(checkpointer.metadata(directory).item_metadata[tree_item])
        if keys is not None:
            stored = {key: stored[key] for key in keys if stored.get(key)}
        target = jax.tree_util.tree_map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), stored)
        restored = checkpointer.restore(directory, args=ocp.args.Composite(**{
            tree_item: ocp.args.PyTreeRestore(
                item=target, partial_restore=keys is not None,
                restore_args=jax.tree_util.tree_map(
                    lambda _: ocp.ArrayRestoreArgs(sharding=device), target)),
            json_item: ocp.args.JsonRestore()}))
    return dict(restored[json_item]), dict(restored[tree_item])


def _flatten(tree, prefix=()) -> dict[tuple[str, ...], Any]:
    if isinstance(tree, Mapping):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, prefix + (str(key),)))
        return out
    return {prefix: tree}


def _shape(leaf) -> tuple[int, ...]:
    return tuple(getattr(leaf, "shape", np.shape(leaf)))


def first_mismatch(expected, found) -> str | None:
    """'path: expected shape A, found B' for the first differing leaf of two variable trees."""
    expected, found = _flatten(expected), _flatten(found)
    for path in sorted(set(expected) | set(found)):
        name = "/".join(path)
        if path not in found:
            return f"{name}: expected shape {_shape(expected[path])}, missing in the checkpoint"
        if path not in expected:
            return f"{name}: in the checkpoint (shape {_shape(found[path])}), not in the model"
        if _shape(expected[path]) != _shape(found[path]):
            return (f"{name}: expected shape {_shape(expected[path])}, "
                    f"checkpoint has {_shape(found[path])}")
    return None


def model_name(model_config) -> str:
    if model_config is None:
        return "?"
    return str(model_config.get("name", "?")) if isinstance(model_config, Mapping) \
        else str(getattr(model_config, "name", "?"))


def _step_dir(path: Path) -> Path | None:
    """The step directory that `path` names: a step dir, a checkpoints dir or a workdir."""
    if (path / "state").is_dir():
        return path
    directory = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    steps = sorted((int(p.name) for p in directory.iterdir()
                    if p.name.isdigit() and (p / "state").is_dir()), reverse=True) \
        if directory.is_dir() else []
    return directory / str(steps[0]) if steps else None


def read_checkpoint(path) -> tuple[dict, dict]:
    """(variables, metadata) from a variables file, a workdir, a checkpoints dir or a step dir.

    A workdir or checkpoints dir gives its latest training checkpoint.
    Metadata holds 'model' (config.model as a dict) and 'step' where known.
    """
    path = Path(path).absolute()  # Orbax reads no tree metadata through a relative path
    if is_variables_checkpoint(path):
        return load_variables(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path} (expected a variables file, a workdir, "
                                f"a {CHECKPOINTS_DIR}/ directory or one of its step directories)")
    step_dir = _step_dir(path)
    if step_dir is None:
        best = path / BEST_DIR / BEST_FILE
        if is_variables_checkpoint(best):
            return load_variables(best)
        raise FileNotFoundError(f"no checkpoint in {path}: no {CHECKPOINTS_DIR}/<step>/state "
                                f"and no {BEST_DIR}/{BEST_FILE}")
    import grain  # the data iterator's item of a training checkpoint
    meta, state = _restore_on_one_device(step_dir, "state", "meta",
                                         keys=("params", "batch_stats"),
                                         other_items={"data": grain.checkpoint.CheckpointHandler()})
    variables = {"params": _to_numpy_tree(state["params"]),
                 "batch_stats": _to_numpy_tree(state.get("batch_stats") or {})}
    return variables, dict(meta)


def load_pretrained(variables: dict, path, part: str = "all") -> dict:
    """`variables` with all of them ('all') or the 'encoder' subtree replaced from `path`.

    Every replaced leaf must have the fresh leaf's shape; the first mismatch
    is named. With 'encoder', everything outside params['encoder'] /
    batch_stats['encoder'] keeps its fresh initialisation (e.g. a head for
    another number of classes).
    """
    if part not in ("all", "encoder"):
        raise ValueError(f"config.model.init_from_part {part!r} is not one of: all, encoder")
    loaded, metadata = read_checkpoint(path)
    origin = f"config.model.init_from={str(path)!r} (model {model_name(metadata.get('model'))!r})"
    if part == "all":
        replaced = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        source = {"params": loaded["params"], "batch_stats": loaded.get("batch_stats", {})}
        mismatch = first_mismatch(replaced, source)
        if mismatch:
            raise ValueError(f"{origin} does not fit the model: {mismatch}")
        return jax.tree_util.tree_map(lambda fresh, new: np.asarray(new, fresh.dtype),
                                      replaced, source)
    result = {"params": dict(variables["params"]),
              "batch_stats": dict(variables.get("batch_stats", {}))}
    if "encoder" not in result["params"]:
        raise ValueError(f"{origin}: init_from_part='encoder' but the model has no 'encoder' "
                         f"parameters (top-level: {sorted(result['params'])})")
    for collection in ("params", "batch_stats"):
        fresh = result[collection].get("encoder")
        if fresh is None:
            continue
        new = loaded.get(collection, {}).get("encoder")
        if new is None:
            raise ValueError(f"{origin} has no {collection}['encoder'] subtree "
                             f"(top-level: {sorted(loaded.get(collection, {}))})")
        mismatch = first_mismatch(fresh, new)
        if mismatch:
            raise ValueError(f"{origin} does not fit the model: {collection}/encoder/{mismatch}")
        result[collection]["encoder"] = jax.tree_util.tree_map(
            lambda f, n: np.asarray(n, f.dtype), fresh, new)
    return result


def _run_config(path: Path):
    """The config.json of the run that `path` belongs to (path or up to 3 parents), or None."""
    import ml_collections
    for candidate in (path, *path.parents[:3]):
        if (candidate / CONFIG_FILE).is_file():
            return ml_collections.ConfigDict(json.loads((candidate / CONFIG_FILE).read_text()))
    return None


def inference_config(path: Path, metadata: dict):
    """The run's config with the model section the checkpoint itself stored.

    The checkpoint's stored model config wins over config.json's: config.json
    describes the run's latest start, which need not be the run that wrote
    this checkpoint. Data and evaluation settings come from config.json.
    """
    import ml_collections
    config = _run_config(path)
    if config is None and "model" not in metadata:
        raise FileNotFoundError(f"restore_for_inference: {path} has no {CONFIG_FILE} nearby and "
                                "its metadata names no model")
    if config is None:
        config = ml_collections.ConfigDict()
        config.imports = tuple(metadata.get("imports", ()))
    if "model" in metadata:
        config.model = ml_collections.ConfigDict(metadata["model"])
    return config


def restore_for_inference(workdir_or_checkpoint):
    """(model, variables, config) from a workdir, a checkpoint directory or a variables file.

    A workdir gives its latest training checkpoint (its best-by-mIoU variables
    are at `workdir/checkpoints_best/variables`; pass that directory for
    them). The model is built from the model config stored in the checkpoint;
    `config` is the run's config.json (a ConfigDict) when one is found next to
    the checkpoint, with that model section.
    """
    from segjax.models import registry
    path = Path(workdir_or_checkpoint)
    variables, metadata = read_checkpoint(path)
    config = inference_config(path if path.is_dir() else path.parent, metadata)
    registry.import_modules(config.get("imports", ()))
    model = registry.build(config.model)
    return model, variables, config
