"""Training checkpoints of a workdir: the train state and the data iterator, and the best.

`TrainingCheckpoints`: Orbax in `workdir/checkpoints/<step>/` with the train
state, every process's grain iterator state and the model config saved
together, so a restart resumes exactly (data order included). The state
restores into the layout (devices, shardings) of the state it is given, so a
checkpoint written on 8 devices continues on 1 or 2 and back. The data
iterator's state is per process: restored when the process count is the
saved one and so is data.batch_size; otherwise `data_restored` is False and
the loop restarts the data stream by position (`segjax.data.pipeline` is a
function of the seed and the stream position). The position is counted in
examples: each checkpoint's meta holds the examples consumed up to its step
(`examples`) and the batch size of its steps, so a resume with another batch
size continues with the next unseen example (`stream_position`). The best state
by validation mIoU is kept apart as a plain variables checkpoint,
`workdir/checkpoints_best/variables` (its metadata holds the step and mIoU):
it serves inference and init_from directly and is never deleted by the
`keep_checkpoints` rotation; a damaged one is moved aside at the next start
(`best_record`), like a damaged step checkpoint.

The variables format, reading any checkpoint for inference or init_from, and
the workdir layout are in `segjax.checkpoints`, which never imports this package.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from segjax import paths
from segjax.checkpoints import (BEST_DIR, BEST_FILE, CHECKPOINTS_DIR, CheckpointError,
                                first_mismatch, is_variables_checkpoint, load_variables,
                                nonfinite_leaf, one_line_reason, orbax_checkpoint,
                                save_variables)
from segjax.models.registry import architecture

STATE_KEYS = ("params", "batch_stats", "opt_state", "step")


def _handlers():
    import grain
    ocp = orbax_checkpoint()
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler()}


CORRUPT_DIR = "checkpoints_corrupt"
START_OVER_HINT = ("Set config.train.start_over=True to train this workdir from step 0 (its "
                   "metrics.jsonl is kept as metrics.before_start_over.jsonl), or use another "
                   "--workdir.")


class ConfigChanged(CheckpointError):
    """A resume whose model (or optimiser state layout) differs from the checkpoint's."""


def _model_config_dict(config) -> dict:
    return json.loads(config.model.to_json_best_effort())


def run_record(config) -> dict:
    """What a checkpoint stores of the config to check a resume: architecture and optimiser."""
    return {"model": json.loads(json.dumps(architecture(config.model), default=str)),
            "optim": json.loads(config.optim.to_json_best_effort()),
            "imports": list(config.get("imports", ()))}


def _flat(tree: dict, section: str) -> dict[str, object]:
    """{'section.a.b': leaf}, lists as tuples (JSON stores a config's tuples as lists)."""
    return {f"{section}.{key}": tuple(value) if isinstance(value, list) else value
            for key, value in traverse_util.flatten_dict(tree, sep=".").items()}


def changed_fields(stored: dict, current: dict, section: str) -> list[str]:
    """'section.key: checkpoint A, config B' for every field whose value differs."""
    before, after = _flat(stored, section), _flat(current, section)
    return [f"{key}: checkpoint {before.get(key, '(absent)')!r}, config "
            f"{after.get(key, '(absent)')!r}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def resume_changes(previous: dict, current: dict) -> list[str]:
    """'config.a.b: old -> new' for every setting a resumed run changes (config.json's dicts)."""
    before, after = _flat(previous, "config"), _flat(current, "config")
    return [f"{key}: {before.get(key, '(absent)')!r} -> {after.get(key, '(absent)')!r}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def _tree_paths(tree) -> set[str]:
    """Leaf paths as 'a.0.mu' (stored metadata names namedtuple fields as dict keys)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in flat}


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
    state) and 'meta' (the step, the model's architecture and the optimiser
    config). Orbax writes into a temporary directory and renames it when
    complete, so a run killed mid-save leaves the previous checkpoints intact.
    The `keep_checkpoints` latest are kept. Saving is synchronous: the loop
    checks the state is finite just before.

    Restoring takes the newest checkpoint that reads back: one that does not
    (a deleted or truncated file) is moved to `workdir/checkpoints_corrupt/`
    with a one-line warning naming the step and why, and the next older one
    is tried. A checkpoint of another model is refused (`ConfigChanged`), not
    skipped.
    """

    def __init__(self, workdir, config, *, log=None):
        # A gs:// workdir is handed to Orbax as a URI (segjax.paths.checkpoint_path).
        self.workdir = paths.checkpoint_path(paths.workdir_path(workdir))
        self.directory = self.workdir / CHECKPOINTS_DIR
        self.record = run_record(config)
        self.allow_config_change = bool(config.train.get("allow_config_change", False))
        self.start_over = bool(config.train.get("start_over", False))
        self.started_over = False  # True once restore() let a quarantined workdir start over
        self.log = log or (lambda message: print(message, flush=True))
        options = orbax_checkpoint().CheckpointManagerOptions(
            max_to_keep=max(1, int(config.train.keep_checkpoints)),
            enable_async_checkpointing=False, cleanup_tmp_directories=True)
        self.manager = orbax_checkpoint().CheckpointManager(
            self.directory, options=options, item_handlers=_handlers())
        self.data_restored = False
        self.batch_size = int(config.data.batch_size)
        self.config_steps = int(config.train.steps)
        # A time-budgeted run's planned step count (segjax.train.budget): saved in each
        # checkpoint's meta, restored when config.train.steps is the one it was planned for.
        self.schedule_steps: int | None = None
        self._resumed_at = (0, 0)  # (step, examples consumed) where this run began

    @property
    def stream_position(self) -> int:
        """Examples of the data stream consumed at the restored step (0 for a fresh run)."""
        return self._resumed_at[1]

    def examples_at(self, step: int) -> int:
        """Examples consumed after train step `step` of this run."""
        base_step, base_examples = self._resumed_at
        return base_examples + (int(step) - base_step) * self.batch_size

    def _plan(self) -> dict:
        if self.schedule_steps is None:
            return {}
        return {"schedule_steps": int(self.schedule_steps),
                "schedule_for_steps": self.config_steps}

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator) -> None:
        """Writes step `step`; a failed write (a full disk) is one CheckpointError line."""
        import grain
        ocp = orbax_checkpoint()
        items = {key: getattr(state, key) for key in STATE_KEYS}
        previous = self.latest_step()
        try:
            self.manager.save(int(step), args=ocp.args.Composite(
                state=ocp.args.StandardSave(items),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                meta=ocp.args.JsonSave({"step": int(step), "examples": self.examples_at(step),
                                        "batch_size": self.batch_size, **self._plan(),
                                        **self.record})))
            self.manager.wait_until_finished()
        except Exception as error:  # Orbax wraps OSErrors in its own and tensorstore's types
            kept = f"step {previous} is intact" if previous is not None else "none was saved"
            raise CheckpointError(f"saving checkpoint step {step} in {self.directory} failed "
                                  f"({one_line_reason(error)}); the previous checkpoint: {kept}") from None

    # ------------------------------------------------------------------ restoring

    def _stored(self, step: int) -> tuple[dict, dict]:
        """(meta, state item metadata) of `step`; raises whatever Orbax raises if unreadable."""
        ocp = orbax_checkpoint()
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        found = self.manager.item_metadata(step)["state"]
        if meta is None or found is None or "params" not in found:
            raise CheckpointError("its meta or state item is missing")
        return dict(meta), found

    def _check_model(self, step: int, meta: dict, found, state) -> None:
        location = self.directory / str(step)
        stored_model = architecture(meta.get("model") or {})
        changes = changed_fields(stored_model, self.record["model"], "config.model")
        expected = {"params": state.params, "batch_stats": state.batch_stats}
        saved = {"params": found["params"], "batch_stats": found.get("batch_stats") or {}}
        mismatch = first_mismatch(expected, saved)
        if mismatch and self.allow_config_change:
            raise ConfigChanged(
                f"checkpoint {location} cannot continue as this model even with "
                f"config.train.allow_config_change=True: its parameters differ at {mismatch} "
                f"({'; '.join(changes) or 'no stored field differs'}). Resume refused and "
                "nothing in the workdir was changed. Start another --workdir with "
                "config.model.init_from pointing at this one (init_from_part='encoder' keeps "
                "only the encoder).")
        if (changes and not self.allow_config_change) or mismatch:
            listed = "; ".join(changes) or "(no stored field differs)"
            raise ConfigChanged(
                f"checkpoint {location} was written by another model than the config "
                f"describes: {listed}" + (f"; parameters differ at {mismatch}" if mismatch
                                          else "") +
                ". Resume refused and nothing in the workdir was changed. Use another "
                "--workdir (with config.model.init_from to start from these weights), or "
                "config.train.allow_config_change=True to continue this run with the new "
                "model when its parameter shapes agree.")

    def _optimizer_matches(self, step: int, meta: dict, found, state) -> bool:
        """True when the stored optimiser state has the layout `state.opt_state` has."""
        if _tree_paths(found.get("opt_state")) == _tree_paths(state.opt_state):
            return True
        changes = changed_fields(meta.get("optim") or {}, self.record["optim"], "config.optim")
        listed = "; ".join(changes) or "the optimiser state's layout differs"
        if not self.allow_config_change:
            raise ConfigChanged(
                f"checkpoint {self.directory / str(step)} holds the state of another optimiser "
                f"than the config's ({listed}). Resume refused; set "
                "config.train.allow_config_change=True to keep its weights and start a fresh "
                "optimiser state, or use another --workdir.")
        self.log(f"warning: config.optim differs from checkpoint step {step} ({listed}); its "
                 "weights are kept and the optimiser state starts afresh")
        return False

    def _quarantine(self, step: int, reason: str) -> None:
        target = self.workdir / CORRUPT_DIR / str(step)
        self.log(f"warning: checkpoint step {step} in {self.directory} is unreadable ({reason}); "
                 f"moved to {target}, trying the next older one")
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                paths.remove_tree(target)
            paths.move_tree(self.directory / str(step), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"segjax quarantine {step}")
        self.manager.reload()

    def _data_file(self, step: int) -> Path:
        """This process's data iterator file (grain names it by process index and count)."""
        return (self.directory / str(step) / "data" /
                f"process_{jax.process_index()}-of-{jax.process_count()}.json")

    def _restore_step(self, step: int, meta: dict, state, data_iterator, keys):
        import grain
        ocp = orbax_checkpoint()
        target = {key: jax.tree_util.tree_map(_abstract, getattr(state, key)) for key in keys}
        items = {"state": ocp.args.StandardRestore(target, strict=len(keys) == len(STATE_KEYS))}
        own = self._data_file(step)
        # Another process count's files only: the stream resumes by position. No file at
        # all is a damaged checkpoint: restoring the item fails and the step is quarantined.
        restore_data = own.exists() or not any(own.parent.glob("process_*-of-*.json"))
        examples = _examples(meta, step, self.batch_size)
        stored_batch = int(meta.get("batch_size", self.batch_size))
        if not restore_data:
            self.log(f"checkpoint step {step} was written by another number of processes than "
                     f"this run's {jax.process_count()}; the data stream resumes at example "
                     f"{examples} by position")
        elif stored_batch != self.batch_size:
            restore_data = False  # the saved iterator counts batches of the old size
            self.log(f"checkpoint step {step} was trained with data.batch_size={stored_batch}, "
                     f"this run uses {self.batch_size}; the data stream resumes at example "
                     f"{examples} by position")
        if restore_data:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if restored.state is None or set(restored.state) != set(keys):
            raise CheckpointError("its state item did not read back")
        self.data_restored = restore_data
        self._resumed_at = (int(step), examples)
        if meta.get("schedule_for_steps") == self.config_steps and meta.get("schedule_steps"):
            self.schedule_steps = int(meta["schedule_steps"])
        return state.replace(**restored.state)

    def restore(self, state, data_iterator):
        """(state, step) from the newest intact checkpoint, or (state, 0) if there is none.

        `data_iterator` is restored in place to continue with the next batch.
        Raises `ConfigChanged` for a checkpoint of another model or optimiser,
        `CheckpointError` when checkpoints exist and none reads back.
        """
        unreadable = []
        if not self.manager.all_steps():
            self._check_quarantined_only()
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                meta, found = self._stored(step)
            except Exception as error:  # pylint: disable=broad-except
                unreadable.append(step)
                self._quarantine(step, one_line_reason(error))
                continue
            self._check_model(step, meta, found, state)
            keys = STATE_KEYS if self._optimizer_matches(step, meta, found, state) \
                else ("params", "batch_stats", "step")
            try:
                restored = self._restore_step(step, meta, state, data_iterator, keys)
            except ConfigChanged:
                raise
            except Exception as error:  # pylint: disable=broad-except
                unreadable.append(step)
                self._quarantine(step, one_line_reason(error))
                continue
            if unreadable:
                self.log(f"resuming from step {step}, the newest intact checkpoint")
            return restored, step
        if unreadable:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: step(s) {unreadable} are unreadable "
                f"(moved to {self.workdir / CORRUPT_DIR}). {START_OVER_HINT}")
        return state, 0

    def _check_quarantined_only(self) -> None:
        """Refuses a workdir whose every checkpoint was quarantined, unless config says start over."""
        quarantined = sorted(int(path.name) for path in (self.workdir / CORRUPT_DIR).glob("*")
                             if path.name.isdigit())
        if not quarantined:
            return
        if not self.start_over:
            raise CheckpointError(
                f"{self.workdir} holds no intact checkpoint, only the unreadable step(s) "
                f"{quarantined} in {self.workdir / CORRUPT_DIR}. {START_OVER_HINT}")
        self.started_over = True
        self.log(f"config.train.start_over: training {self.workdir} from step 0 (its "
                 f"unreadable step(s) {quarantined} stay in {CORRUPT_DIR}/)")

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _examples(meta: dict, step: int, batch_size: int) -> int:
    """Examples consumed at a checkpoint: its meta's count, or (older checkpoints) steps x
    the batch size, the stored one or else this run's."""
    if "examples" in meta:
        return int(meta["examples"])
    return int(step) * int(meta.get("batch_size", batch_size))


def _best_dir(workdir):
    return paths.checkpoint_path(paths.as_path(workdir)) / BEST_DIR


def save_best(workdir, variables, config, *, step: int, miou: float) -> Path:
    """The best-so-far variables (by validation mIoU) as a plain variables file; weights
    holding NaN or inf are never saved (CheckpointError naming the step and variable)."""
    bad = nonfinite_leaf(variables)
    if bad is not None:
        raise CheckpointError(f"best checkpoint of step {step} not saved: variable {bad} holds "
                              f"NaN or inf; {_best_dir(workdir)} is unchanged")
    return save_variables(_best_dir(workdir) / BEST_FILE, variables,
                          {"model": _model_config_dict(config), "step": int(step),
                           "miou": float(miou), "imports": list(config.imports)})


def best_record(workdir, *, log=None) -> dict | None:
    """Metadata ({'step', 'miou', ...}) of the best checkpoint of a workdir, if any.

    A damaged one (unreadable, or not a variables checkpoint) would stop every
    resume: it is moved to `workdir/checkpoints_corrupt/best` with a one-line
    warning, as damaged step checkpoints are, and the best mIoU starts afresh.
    """
    best = _best_dir(workdir)
    path = best / BEST_FILE
    if not path.exists():
        return None
    try:
        if not is_variables_checkpoint(path):
            raise CheckpointError("its 'variables' or 'metadata' item is missing")
        return load_variables(path)[1]
    except Exception as error:  # pylint: disable=broad-except
        target = paths.checkpoint_path(paths.as_path(workdir)) / CORRUPT_DIR / "best"
        (log or (lambda message: print(message, flush=True)))(
            f"warning: the best checkpoint {path} is unreadable ({one_line_reason(error)}); "
            f"moved to {target}, the best mIoU starts afresh")
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                paths.remove_tree(target)
            paths.move_tree(best, target)
        return None
