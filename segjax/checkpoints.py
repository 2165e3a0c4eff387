"""Checkpoint I/O: the variables format, the workdir layout, reading any checkpoint, `load`.

This module is what inference, export and conversion need of checkpoints, and
it never imports `segjax.train`; training's own checkpoints (train state +
data iterator) are in `segjax.train.checkpoint`, which builds on it.

    checkpoint = checkpoints.load(path)     # a workdir, a checkpoint or a variables file
    checkpoint.model, checkpoint.variables, checkpoint.config

`load(path, config=None)` is the one way inference reads a checkpoint: the
variables of the latest (or named) checkpoint, and the model built from
`config`, by default the run's own stored config (`stored_config(path)`: the
run's config.json with the model section the checkpoint itself stored).
Entry points apply `config.runtime` themselves (`segjax.runtime.configure`).

Plain variables (`save_variables` / `load_variables`): an Orbax checkpoint
directory holding `{'params': ..., 'batch_stats': ...}` plus a JSON metadata
dict (by convention 'model': the config.model dict). The PyTorch weight
converters write these; `config.model.init_from` (`load_pretrained`) and
`load` read them. Written atomically (complete on disk before it replaces an
older one), readable without building the model.

The layout of a training workdir (`CHECKPOINTS_DIR`/<step>/{state,data,meta},
`BEST_DIR`/`BEST_FILE`, `CONFIG_FILE`) is fixed here, so that
`read_checkpoint(path)` reads variables from a variables file, a workdir, a
checkpoints dir or a step dir, whatever topology wrote them. A workdir whose
latest step is unreadable (a truncated file) gives the newest one that reads
back, with a warning, as a resumed training run does (nothing is moved).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from segjax import paths
from segjax.config import base_config
from segjax.models import registry

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
BEST_FILE = "variables"
CONFIG_FILE = "config.json"


def orbax_checkpoint():
    import orbax.checkpoint as ocp  # heavy; only the training paths need it
    return ocp


VARIABLES_FORMAT = "segjax.variables/1"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says why and what to do."""


def one_line_reason(error: BaseException) -> str:
    """One line from an Orbax/tensorstore/JSON error (their messages run to many lines)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def nonfinite_leaf(variables) -> str | None:
    """The path ('params/conv/kernel') of the first variable holding NaN or inf, else None."""
    for name, leaf in sorted(traverse_util.flatten_dict(dict(variables), sep="/").items()):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.inexact) \
                and not np.isfinite(np.asarray(jax.device_get(leaf), np.float32)).all():
            return name
    return None


def _to_numpy_tree(tree):
    if isinstance(tree, Mapping):
        return {str(key): _to_numpy_tree(value) for key, value in tree.items()}
    return np.asarray(jax.device_get(tree))


def is_variables_checkpoint(path) -> bool:
    """True when `path` is a directory written by `save_variables`."""
    path = paths.as_path(path)
    return (path / "variables").is_dir() and (path / "metadata").is_dir()


def check_replaceable(path, *, overwrite: bool = False) -> None:
    """FileExistsError unless `path` is absent, an empty directory, a variables checkpoint
    (replaced by a newer one) or `overwrite` is set: other files are never deleted unasked."""
    path = paths.as_path(path)
    if overwrite or not path.exists() or is_variables_checkpoint(path):
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    kind = "a non-empty directory" if path.is_dir() else "a file"
    raise FileExistsError(f"{path} is {kind} that is not a segjax variables checkpoint; "
                          "refusing to replace it (choose another output, or pass "
                          "--overwrite to delete it)")


def save_variables(path, variables: Mapping[str, Any], metadata: Mapping[str, Any] | None = None,
                   *, overwrite: bool = False) -> Path:
    """Writes `variables` ({'params': ..., 'batch_stats': ...}) and `metadata` to `path`.

    `path` becomes an Orbax checkpoint directory (items "variables" and
    "metadata"). `metadata` must be JSON-serialisable; by convention it holds
    'model' (the config.model dict) so that `load` can rebuild
    the model. Replacing an existing checkpoint is atomic for readers: the new
    one is complete on disk before the old one is moved aside and removed
    (in a bucket, gs://, Orbax replaces it in place: there is no atomic rename).
    Anything else at `path` is replaced only with `overwrite` (`check_replaceable`).
    """
    path = paths.absolute(path)
    check_replaceable(path, overwrite=overwrite)
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError(f"save_variables({path}): expected a mapping with a 'params' entry "
                         f"(and optionally 'batch_stats'), got {type(variables).__name__} with "
                         f"keys {list(variables) if isinstance(variables, Mapping) else '-'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not paths.is_local(path):  # a bucket has no atomic folder rename: Orbax replaces it
        _save_variables_to(path, variables, metadata)
        return path
    fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
    stale = path.with_name(f".{path.name}.old-{os.getpid()}")
    _save_variables_to(fresh, variables, metadata)
    if path.exists():
        os.replace(path, stale)
    os.replace(fresh, path)
    if stale.exists():
        shutil.rmtree(stale)
    return path


def _save_variables_to(path, variables, metadata) -> None:
    ocp = orbax_checkpoint()
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(path, ocp.args.Composite(
            variables=ocp.args.StandardSave(_to_numpy_tree(variables)),
            metadata=ocp.args.JsonSave({"format": VARIABLES_FORMAT,
                                        "metadata": dict(metadata or {})})), force=True)


def load_variables(path) -> tuple[dict, dict]:
    """Reads a checkpoint written by `save_variables`: (variables, metadata)."""
    path = paths.absolute(path)
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


def _shape(leaf) -> tuple[int, ...]:
    return tuple(getattr(leaf, "shape", np.shape(leaf)))


def first_mismatch(expected, found) -> str | None:
    """'path: expected shape A, found B' for the first differing leaf of two variable trees."""
    expected = traverse_util.flatten_dict(dict(expected), sep="/")
    found = traverse_util.flatten_dict(dict(found), sep="/")
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            return f"{name}: expected shape {_shape(expected[name])}, missing in the checkpoint"
        if name not in expected:
            return f"{name}: in the checkpoint (shape {_shape(found[name])}), not in the model"
        if _shape(expected[name]) != _shape(found[name]):
            return (f"{name}: expected shape {_shape(expected[name])}, "
                    f"checkpoint has {_shape(found[name])}")
    return None


def model_name(model_config) -> str:
    if model_config is None:
        return "?"
    return str(model_config.get("name", "?")) if isinstance(model_config, Mapping) \
        else str(getattr(model_config, "name", "?"))


def _step_dirs(path: Path) -> list[Path]:
    """The step directories `path` names, newest first: itself (a step dir), or the steps
    of a checkpoints dir or a workdir."""
    if (path / "state").is_dir():
        return [path]
    directory = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    steps = sorted((int(p.name) for p in directory.iterdir()
                    if p.name.isdigit() and (p / "state").is_dir()), reverse=True) \
        if directory.is_dir() else []
    return [directory / str(step) for step in steps]


def _candidates(path: Path) -> list[tuple[Path, bool]]:
    """(directory, is a variables file) of the checkpoints `path` may mean, preferred first.

    A variables file or a step dir is itself alone; a workdir or checkpoints dir gives
    its steps newest first, then its best variables (what a run left when its steps
    are unreadable, or the only thing when it kept none).
    """
    if is_variables_checkpoint(path):
        return [(path, True)]
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path} (expected a variables file, a workdir, "
                                f"a {CHECKPOINTS_DIR}/ directory or one of its step directories)")
    found = [(step_dir, False) for step_dir in _step_dirs(path)]
    if found and found[0][0] == path:
        return found
    best = path / BEST_DIR / BEST_FILE
    if is_variables_checkpoint(best):
        found.append((best, True))
    if not found:
        raise FileNotFoundError(f"no checkpoint in {path}: no {CHECKPOINTS_DIR}/<step>/state "
                                f"and no {BEST_DIR}/{BEST_FILE}")
    return found


_reported_unreadable: set[str] = set()  # warned once per process (load reads twice)


def _first_readable(path, read):
    """`read(directory, is_variables)` of the first of `path`'s candidates that reads back.

    An unreadable one (a truncated file, a killed write) is skipped with a one-line
    warning on stderr, as a resumed training run skips it; nothing is moved or
    deleted. When none reads back: a path naming one checkpoint re-raises its error
    if it is one of ours (ValueError, FileNotFoundError), otherwise a CheckpointError
    names every one and why.
    """
    path = paths.absolute(path)  # Orbax reads no tree metadata through a relative path
    candidates = _candidates(path)
    failures = []
    for directory, is_variables in candidates:
        try:
            result = read(directory, is_variables)
        except Exception as error:  # pylint: disable=broad-except
            if len(candidates) == 1 and isinstance(error, (ValueError, FileNotFoundError)):
                raise
            failures.append((directory, error))
            continue
        for skipped, error in failures:
            if str(skipped) not in _reported_unreadable:
                _reported_unreadable.add(str(skipped))
                print(f"warning: checkpoint {skipped} is unreadable ({one_line_reason(error)}); "
                      f"using {directory}", file=sys.stderr, flush=True)
        return result
    listed = "; ".join(f"{directory}: {one_line_reason(error)}" for directory, error in failures)
    raise CheckpointError(f"no readable checkpoint in {path} ({listed})")


def _read_metadata_of(directory: Path, is_variables: bool) -> dict:
    item = "metadata" if is_variables else "meta"
    ocp = orbax_checkpoint()
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler(
            **{item: ocp.JsonCheckpointHandler()})) as checkpointer:
        stored = dict(checkpointer.restore(directory, args=ocp.args.Composite(
            **{item: ocp.args.JsonRestore()}))[item])
    return dict(stored["metadata"]) if is_variables else stored


def read_metadata(path) -> dict:
    """The metadata `read_checkpoint(path)` would return, without reading any array."""
    return _first_readable(path, _read_metadata_of)


def _read_checkpoint_of(directory: Path, is_variables: bool) -> tuple[dict, dict]:
    if is_variables:
        return load_variables(directory)
    import grain  # the data iterator's item of a training checkpoint
    meta, state = _restore_on_one_device(directory, "state", "meta",
                                         keys=("params", "batch_stats"),
                                         other_items={"data": grain.checkpoint.CheckpointHandler()})
    variables = {"params": _to_numpy_tree(state["params"]),
                 "batch_stats": _to_numpy_tree(state.get("batch_stats") or {})}
    return variables, dict(meta)


def read_checkpoint(path) -> tuple[dict, dict]:
    """(variables, metadata) from a variables file, a workdir, a checkpoints dir or a step dir.

    A workdir or checkpoints dir gives its latest training checkpoint that reads
    back (an unreadable one is skipped with a warning; `_first_readable`), else
    its best variables. Metadata holds 'model' (config.model as a dict) and 'step'
    where known.
    """
    return _first_readable(path, _read_checkpoint_of)


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


def _tuples(value):
    """JSON's lists back as the tuples a config holds (config_flags overrides only tuples)."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _run_config_file(path: Path) -> Path | None:
    """The config.json of the run that `path` belongs to (path or up to 3 parents)."""
    for candidate in (path, *path.parents[:3]):
        if (candidate / CONFIG_FILE).is_file():
            return candidate / CONFIG_FILE
    return None


def stored_config(path) -> ml_collections.ConfigDict:
    """The config of the run that wrote the checkpoint `path` names.

    The schema's defaults (`segjax.config.base_config`), updated with the
    run's config.json (data, evaluation and runtime settings; keys the run's
    config added are kept), with the model section the checkpoint itself
    stored: config.json describes the run's latest start, which need not be
    the run that wrote this checkpoint. Without a config.json only the model
    (and config.imports) come from the checkpoint.
    """
    path = paths.absolute(path)
    metadata = read_metadata(path)
    config = base_config()
    config_file = _run_config_file(path if path.is_dir() else path.parent)
    if config_file is None and "model" not in metadata:
        raise FileNotFoundError(f"{path} has no {CONFIG_FILE} nearby and its metadata names "
                                "no model; pass the run's config (--config)")
    if config_file is not None:
        config.update(_tuples(json.loads(config_file.read_text())))
    else:
        config.imports = tuple(metadata.get("imports", ()))
    if "model" in metadata:
        config.model = ml_collections.ConfigDict(_tuples(metadata["model"]))
    return config


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What `load` reads: the model (built from `config.model`), its variables, the config."""

    model: Any
    variables: dict
    config: ml_collections.ConfigDict
    metadata: dict


def load(path, config=None) -> Checkpoint:
    """The checkpoint of a workdir (its latest), a checkpoints or step dir, or a variables file.

    `config` (default: `stored_config(path)`, the run's own) names the model
    and the modules it imports (config.imports). Variables holding NaN or inf
    are refused (`CheckpointError`). The best-by-mIoU variables
    of a workdir are at `workdir/checkpoints_best/variables`.
    """
    config = stored_config(path) if config is None else config
    variables, metadata = read_checkpoint(path)
    bad = nonfinite_leaf(variables)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} (step {metadata.get('step', '?')}): variable "
                              f"{bad} holds NaN or inf; a diverged run's weights predict "
                              "nothing. Use an earlier checkpoint (a step directory, or the "
                              f"run's {BEST_DIR}/{BEST_FILE})")
    registry.import_modules(config.get("imports", ()))
    model = registry.build(config.model)
    return Checkpoint(model, variables, config, metadata)
