"""Training checkpoints of a workdir: the train state and the data iterator, and the best.

`TrainingCheckpoints`: Orbax in `workdir/checkpoints/<step>/` with the train
state, every process's grain iterator state and the model config saved
together, so a restart resumes exactly (data order included). The best state
by validation mIoU is kept apart as a plain variables checkpoint,
`workdir/checkpoints_best/variables` (its metadata holds the step and mIoU):
it serves inference and init_from directly and is never deleted by the
`keep_checkpoints` rotation.

The variables format, reading any checkpoint for inference or init_from, and
the workdir layout are in `segjax.weights`, which never imports this package.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from segjax.weights import (BEST_DIR, BEST_FILE, CHECKPOINTS_DIR, CONFIG_FILE,  # noqa: F401
                            orbax_checkpoint, first_mismatch, is_variables_checkpoint, load_variables,
                            model_name, save_variables)

STATE_KEYS = ("params", "batch_stats", "opt_state", "step")


def _handlers():
    import grain
    ocp = orbax_checkpoint()
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler()}


def _model_config_dict(config) -> dict:
    return json.loads(config.model.to_json_best_effort())


def _abstract(leaf) -> jax.ShapeDtypeStruct:
    """Restore target for one leaf: its shape, dtype and (for jax arrays) sharding."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    value = np.asarray(leaf)
    return jax.ShapeDtypeStruct(value.shape, value.dtype)


class TrainingCheckpoints:
    """Orbax checkpoints of the train state and the data iterator in `workdir/checkpoints`.

    Each step directory holds three items written together: 'state' (params,
    batch_stats, opt_state, step), 'data' (every process's grain iterator
    state) and 'meta' (step and config.model). Orbax writes into a temporary
    directory and renames it when complete, so a run killed mid-save leaves
    the previous checkpoints intact. The `keep_checkpoints` latest are kept.
    Saving is synchronous: the loop checks the state is finite just before.
    """

    def __init__(self, workdir, config):
        ocp = orbax_checkpoint()
        self.directory = Path(workdir).resolve() / CHECKPOINTS_DIR
        self.model_config = _model_config_dict(config)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max(1, int(config.train.keep_checkpoints)),
            enable_async_checkpointing=False, cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=_handlers())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator) -> None:
        import grain
        ocp = orbax_checkpoint()
        items = {key: getattr(state, key) for key in STATE_KEYS}
        self.manager.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(items),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            meta=ocp.args.JsonSave({"step": int(step), "model": self.model_config})))
        self.manager.wait_until_finished()

    def _check_compatible(self, step: int, state) -> None:
        location = self.directory / str(step)
        meta = self.manager.restore(step, args=orbax_checkpoint().args.Composite(
            meta=orbax_checkpoint().args.JsonRestore())).meta
        found = self.manager.item_metadata(step)["state"]
        expected = {"params": state.params, "batch_stats": state.batch_stats}
        saved = {"params": found["params"], "batch_stats": found.get("batch_stats") or {}}
        mismatch = first_mismatch(expected, saved)
        if mismatch:
            raise ValueError(
                f"checkpoint {location} was written by model {model_name(meta.get('model'))!r} "
                f"but config.model.name is {model_name(self.model_config)!r}; the parameters "
                f"differ at {mismatch}. Use another --workdir, or config.model.init_from to "
                "start from compatible weights.")

    def restore(self, state, data_iterator):
        """(state, step) restored from the latest checkpoint, or (state, 0) if there is none.

        `data_iterator` is restored in place to continue with the next batch.
        """
        import grain
        ocp = orbax_checkpoint()
        step = self.latest_step()
        if step is None:
            return state, 0
        self._check_compatible(step, state)
        target = {key: jax.tree_util.tree_map(_abstract, getattr(state, key))
                  for key in STATE_KEYS}
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
        return state.replace(**restored.state), step

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def save_best(workdir, variables, config, *, step: int, miou: float) -> Path:
    """The best-so-far variables (by validation mIoU) as a plain variables file."""
    return save_variables(Path(workdir) / BEST_DIR / BEST_FILE, variables,
                          {"model": _model_config_dict(config), "step": int(step),
                           "miou": float(miou), "imports": list(config.imports)})


def best_record(workdir) -> dict | None:
    """Metadata ({'step', 'miou', ...}) of the best checkpoint of a workdir, if any."""
    path = Path(workdir) / BEST_DIR / BEST_FILE
    if not is_variables_checkpoint(path):
        return None
    return load_variables(path)[1]


