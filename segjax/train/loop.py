"""`train_and_evaluate(config, workdir)`: the training loop.

What a run writes under `workdir`:

    config.json                   the full config (segjax.checkpoints.stored_config reads it)
    splits.json                   the files each split selects (segjax.train.splits: a resume
                                  whose folder changed is refused)
    checkpoints/<step>/           Orbax: state/ (params, batch_stats, opt_state, step),
                                  data/ (each process's grain iterator state), meta/
    checkpoints_best/variables    best validation mIoU so far (segjax.checkpoints format)
    tensorboard/                  event files (loss, lr, steps/s, validation metrics, images)
    metrics.jsonl                 one JSON line per log / eval step
    eval_metrics.json             the last evaluation (mIoU, per-class IoU, pixel accuracy, ...;
                                  PQ, SQ, RQ for panoptic models)
    predictions/<name>.png        image | prediction overlay | errors vs label (last evaluation)
    .lock                         the run's lock (segjax.train.workdir)

`workdir` is a local path or a bucket URI (gs://bucket/runs/name): every file
above is written through `segjax.paths`, which keeps a local path a resolved
`pathlib.Path` and a URI an `etils.epath.Path` (what each file becomes in a
bucket, and the lease that locks it there: docs/scale.md).

Restarting with the same workdir resumes from the latest checkpoint, data
iterator included, so the run continues as if never stopped. A non-finite
loss, or non-finite weights, stop the run with `TrainingDiverged` naming the
step and the last good checkpoint; a non-finite state is never evaluated or
saved (nor kept as the best checkpoint). `config.train.max_minutes`
bounds the training time (evaluation excluded): the step count that fits is
set from the step time measured after warm-up and the schedule rebuilt over it
(`segjax.train.budget`), and a run past the budget still stops at the next log
step (decisions shared by all processes). The validation split is decoded at
start-up, and the files of each split are recorded (`segjax.train.splits`). A
SIGTERM or a Ctrl-C (SIGINT) stops the run after the current step with a
checkpoint of it (`segjax.train.preemption`: every process stops after the
same step), and `train_and_evaluate` returns `{"preempted": message,
"signal": name}` instead of an evaluation. With several processes
only process 0 writes files; all of them run the same steps and evaluations.

The train state is created in the layout of `config.mesh` (replicated, or
FSDP / rules: `segjax.sharding`; `segjax.train.state`), and a checkpoint
restores into the layout of the mesh the run has now, so a run continues on
another number of devices or processes. The train step and the evaluation's
predict programs are compiled once per run (and input shape); each
evaluation passes the current weights to the same program. The model is
applied under `config.model.dtype` and `config.train.remat`
(`segjax.models.policy`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np
import tqdm

from segjax import config as config_lib, evaluation, metrics as metrics_lib, optim, runtime
from segjax import checkpoints, pretrained, sharding, visualize
from segjax import paths
from segjax.models.policy import ApplyPolicy
from segjax.models.segmenter import count_params
from segjax.panoptic import quality as panoptic_quality
from segjax.train import checkpoint as ckpt
from segjax.train import budget as budget_lib, splits, state as state_lib, step as step_lib
from segjax.train.logging import METRICS_FILE, TENSORBOARD_DIR, MetricWriter, ProgressBar
from segjax.train.preemption import PreemptionWatch
from segjax.train.workdir import WorkdirBusy, WorkdirLock

EVAL_FILE = "eval_metrics.json"
PREDICTIONS_DIR = "predictions"
PREEMPTED = "preempted"  # the result's key when a SIGTERM or SIGINT stopped the run
STOP_SIGNAL = "signal"   # and the signal's name ('SIGTERM', 'SIGINT')

Hook = Callable[[int, state_lib.TrainState], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def write_config(config, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    paths.write_text(workdir / checkpoints.CONFIG_FILE,
                     config.to_json_best_effort(indent=2) + "\n")


def _report_changes(config, workdir: Path, step: int) -> None:
    """Logs each setting that differs from the config.json of the run being resumed."""
    stored = workdir / checkpoints.CONFIG_FILE
    if not stored.is_file():
        return
    changes = ckpt.resume_changes(json.loads(stored.read_text()),
                                  json.loads(config.to_json_best_effort()))
    if changes:
        _log(f"resuming at step {step} with {len(changes)} changed setting(s):")
    for change in changes:
        _log(f"  {change}")


def _keep_old_metrics(workdir: Path) -> None:
    """Moves a started-over workdir's metrics.jsonl aside (numbered if one is there already)."""
    metrics = workdir / METRICS_FILE
    if not metrics.is_file():
        return
    kept, number = workdir / "metrics.before_start_over.jsonl", 1
    while kept.exists():
        number += 1
        kept = workdir / f"metrics.before_start_over.{number}.jsonl"
    metrics.rename(kept)
    _log(f"the earlier run's {METRICS_FILE} is kept as {kept.name}")


def _is_main() -> bool:
    return jax.process_index() == 0


def _log(message: str) -> None:
    if _is_main():
        print(message, flush=True)


def _agree_int(value: int) -> int:
    """Process 0's `value` on every process."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils
    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


def _agree(flag: bool) -> bool:
    """Process 0's value of `flag` on every process (decisions must not diverge)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.bool_(flag)))


# --------------------------------------------------------------------------------------
# The run.

def train_and_evaluate(config, workdir, *, hooks: Sequence[Hook] = ()) -> dict:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the last eval.

    Before any work: the config's counts are validated, a known dataset
    missing from data.root is fetched (before the workdir is created), the
    workdir is locked against a second run and checked writable. The resume check
    (`TrainingCheckpoints.restore`) runs before config.json is written, so a
    refused resume leaves the workdir as it was. `hooks` are called as
    hook(step, state) after every step, once the step's logging, checkpoint
    and evaluation are done. A run stopped by SIGTERM returns
    `{PREEMPTED: message}` once its checkpoint is saved.
    """
    from segjax import data as data_lib
    from segjax.models import registry

    workdir = paths.workdir_path(workdir)  # a gs:// URI stays one (segjax.paths)
    config_lib.validate(config)
    runtime.configure(config)
    pretrained.configure(config, log=_log)   # a preset's input normalisation
    if _is_main():  # before the workdir exists: a run without its data leaves none behind
        data_lib.sources.ensure_dataset(config.data)
    train = config.train
    if _is_main():  # before the lock file is opened in it
        paths.check_writable(workdir, workdir / checkpoints.CHECKPOINTS_DIR)
    with contextlib.ExitStack() as cleanup:
        lock = cleanup.enter_context(WorkdirLock(workdir, enabled=_is_main()))
        watch = cleanup.enter_context(PreemptionWatch())
        registry.import_modules(config.imports)
        model = registry.build(config.model)
        mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch_size(int(config.data.batch_size), mesh)
        policy = ApplyPolicy.from_config(config)
        input_shape = (1, *config.data.crop, int(config.data.image_channels))
        saver = cleanup.enter_context(contextlib.closing(
            ckpt.TrainingCheckpoints(workdir, config, log=_log)))
        # A run that resumes takes its weights from its checkpoint: init_from (a preset's
        # download) is applied only when no checkpoint reads back.
        resuming = saver.latest_step() is not None
        state, schedule = state_lib.create_train_state(config, model, input_shape, mesh,
                                                       init_from=not resuming)
        state, start_step, loader = _resume(config, saver, state, cleanup)
        if resuming and start_step == 0 and config.model.init_from:
            state, schedule = state_lib.create_train_state(config, model, input_shape, mesh)
        splits.check_and_record(config, workdir, start_step, write=_is_main(), log=_log)
        if _is_main():
            if start_step:
                _report_changes(config, workdir, start_step)
            if saver.started_over:
                _keep_old_metrics(workdir)
            write_config(config, workdir)
        _log(_run_line(config, mesh, state, policy, start_step))

        def compile_step(state):
            return step_lib.compile_train_step(
                mesh, model=model, loss_config=config.loss,
                num_classes=int(config.model.num_classes),
                ignore_index=int(config.data.ignore_index), policy=policy,
                state_shardings=sharding.tree_shardings(state, mesh, config.mesh),
                mesh_config=config.mesh)

        plan = budget_lib.BudgetPlan(float(train.max_minutes) * 60.0, int(train.steps),
                                     start_step, planned_steps=saver.schedule_steps)
        if plan.planned_steps and plan.planned_steps < int(train.steps):
            state, schedule = _with_schedule(config, state, plan.planned_steps)
            _log(f"time budget: resuming the plan of {plan.planned_steps} steps (instead of "
                 f"config.train.steps={train.steps}) stored in the checkpoint")
        train_step = compile_step(state)
        validation = (_Validation(config, workdir, model, mesh, policy, _variables(state))
                      if config.data.val_split else None)
        writer = MetricWriter(workdir, console=False, enabled=_is_main(),
                              resume_step=start_step)
        cleanup.callback(_close_quietly, writer)
        bar = ProgressBar(plan.total, start_step,
                          enabled=bool(train.progress_bar) and _is_main())
        cleanup.callback(bar.close)
        dropout_rng = jax.random.fold_in(runtime.key(int(train.seed)), 1)

        total, step, result, accumulator = plan.total, start_step, None, None
        budget, train_seconds, rate = plan.budget_seconds, 0.0, _Rate(step)
        with _disk_full_stops_the_run(workdir, saver):
            while step < total:
                started = budget_lib.clock()
                batch = _next_batch(loader, mesh, config, step + 1)
                state, metrics = train_step(state, batch, dropout_rng)
                accumulator = step_lib.accumulate(accumulator, metrics, state.step)
                step += 1
                # Several devices/processes: an unbounded dispatch queue can hang. CPU:
                # compute shares the cores with dispatch, so blocking costs nothing and
                # keeps the progress bar's rate and the time budget honest.
                if (jax.process_count() > 1 or jax.local_device_count() > 1
                        or jax.default_backend() == "cpu"):
                    jax.block_until_ready(accumulator)

                last = step == total
                if step % int(train.log_every) == 0 or last:
                    _check_finite(accumulator, state, saver)
                    train_seconds += budget_lib.clock() - started  # the sync above included
                    _log_train_metrics(config, schedule, writer, bar, accumulator, step,
                                       rate(step), total)
                    accumulator = None
                    review = plan.review(step, train_seconds) if budget else None
                    shorter = _agree_int(review[0] if review else 0) if budget else 0
                    if shorter:  # process 0's review decides for every process
                        _log(review[1] if review else
                             f"time budget: the schedule now runs over {shorter} steps")
                        total = saver.schedule_steps = shorter
                        plan.adopt(total, step, train_seconds, recompiled=True)
                        state, schedule, train_step = _shorten(config, state, total, bar,
                                                               compile_step)
                        last = last or step >= total
                    if budget and _agree(train_seconds > budget):
                        _log(f"stopping at step {step}: config.train.max_minutes="
                             f"{train.max_minutes} reached")
                        last = True
                else:
                    train_seconds += budget_lib.clock() - started
                    bar.update(step)
                plan.step_done(step, train_seconds)
                if plan.due(step):
                    synced = budget_lib.clock()
                    jax.block_until_ready(metrics)
                    train_seconds += budget_lib.clock() - synced
                    planned, line = plan.decide(step, train_seconds)
                    _log(line)
                    total = saver.schedule_steps = _agree_int(planned)
                    recompiled = total < int(train.steps)
                    plan.adopt(total, step, train_seconds, recompiled=recompiled)
                    if recompiled:
                        state, schedule, train_step = _shorten(config, state, total, bar,
                                                               compile_step)
                    last = last or step >= total
                preempted = watch.should_stop(step)
                if step % int(train.checkpoint_every) == 0 or last or preempted:
                    _check_finite(accumulator, state, saver)
                    _check_lock(lock)
                    saver.save(step, state, loader)
                if preempted:
                    return {PREEMPTED: f"{watch.signal_name} received: stopped after step "
                                       f"{step} and saved checkpoint step {step} in "
                                       f"{saver.directory}; run the same command to resume",
                            STOP_SIGNAL: watch.signal_name}
                if validation and (step % int(train.eval_every) == 0 or last):
                    _check_finite(accumulator, state, saver)
                    result = validation.run(step, _variables(state), writer, final=last,
                                            training=_training_record(config, schedule, step,
                                                                      total))
                for hook in hooks:
                    hook(step, state)
                if last:
                    break
            if result is None and validation:
                _check_finite(accumulator, state, saver)
                result = validation.run(step, _variables(state), writer, final=True,
                                        training=_training_record(config, schedule, step, total))
        record = _training_record(config, schedule, step, total)
        _log(f"trained {step} steps (schedule over {record['schedule_steps']}, "
             f"config.train.steps={train.steps}); final learning rate "
             f"{record['learning_rate']:.3g}")
        best = validation.best_miou if validation else -1.0
    _log(_summary(workdir, saver, best))
    return result or {}


def _variables(state: state_lib.TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


def _make_loader(config, start_example: int):
    from segjax import data as data_lib
    return data_lib.make_train_loader(
        config.data, seed=int(config.train.seed), process_index=jax.process_index(),
        process_count=jax.process_count(), start_example=start_example)


def _close_loader(loader) -> None:
    if hasattr(loader, "close"):
        loader.close()  # stops grain worker processes


def _resume(config, saver: ckpt.TrainingCheckpoints, state, cleanup: contextlib.ExitStack):
    """(state, step, data loader) of the newest checkpoint, or the fresh state at step 0.

    The loader continues after the checkpoint's step: restored with the state
    when the checkpoint holds this process count's iterator state for this
    batch size, otherwise started afresh at the checkpoint's stream position
    (examples consumed). `cleanup` closes it.
    """
    loader = _make_loader(config, 0)
    try:
        state, step = saver.restore(state, loader)
    except BaseException:
        _close_loader(loader)
        raise
    if step and not saver.data_restored:
        _close_loader(loader)
        loader = _make_loader(config, saver.stream_position)
    cleanup.callback(_close_loader, loader)
    return state, step, loader


def _next_batch(loader, mesh, config, step: int) -> dict:
    """The batch of train step `step` (1-based), checked, as global arrays over the mesh."""
    batch = next(loader)
    metrics_lib.validate_labels(batch["label"], int(config.model.num_classes),
                                int(config.data.ignore_index),
                                where=f"training batch of step {step}",
                                multilabel=config.model.head_activation == "sigmoid")
    return sharding.global_batch(batch, mesh)


def _run_line(config, mesh, state, policy, start_step: int) -> str:
    return (f"model {config.model.name}: {count_params(_variables(state)):,} parameters; mesh "
            f"{dict(mesh.shape)} over {jax.device_count()} devices, "
            f"{jax.process_count()} process(es); train state "
            f"{config.mesh.get('param_sharding', 'replicated')}, "
            f"{sharding.bytes_per_device(state) / 2 ** 20:.1f} MiB per device; compute "
            f"{policy.compute_dtype}; "
            + (f"resumed at step {start_step}" if start_step else "starting from step 0"))


@contextlib.contextmanager
def _disk_full_stops_the_run(workdir: Path, saver: ckpt.TrainingCheckpoints):
    """A full disk while training is one CheckpointError line naming the intact checkpoint."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ckpt.CheckpointError(
            f"the disk is full ({error.filename or workdir}: {error.strerror}); training "
            f"stopped, the latest checkpoint (step {saver.latest_step()}) is intact"
        ) from None


def _check_lock(lock: WorkdirLock) -> None:
    """Stops every process when process 0's workdir lease was taken over (`WorkdirLock.check`)."""
    try:
        lock.check()
        lost = None
    except WorkdirBusy as error:
        lost = error
    if _agree(lost is not None):
        raise lost or WorkdirBusy("the workdir's lease was taken over by another run (process 0 "
                                  "found out); stopped before writing")


def _check_finite(accumulator, state, saver: ckpt.TrainingCheckpoints) -> None:
    """Raises TrainingDiverged when a loss since the last log step or the state is not finite.

    Run before every checkpoint and every evaluation: non-finite weights are never
    evaluated, saved, or kept as the best checkpoint."""
    bad_step, what = step_lib.NO_STEP, "loss"
    if accumulator is not None:
        bad_step = int(sharding.local_value(accumulator["first_nonfinite_step"]))
    if bad_step == step_lib.NO_STEP and not step_lib.tree_is_finite(_variables(state)):
        bad_step, what = int(sharding.local_value(state.step)), "the weights (params/batch_stats)"
    if bad_step == step_lib.NO_STEP:
        return
    saved = saver.latest_step()
    where = (f"step {saved} in {saver.directory}" if saved
             else "none (no checkpoint was saved)")
    raise TrainingDiverged(
        f"training diverged: {what} not finite (NaN or inf) at step {bad_step}; stopped "
        "without saving or evaluating. "
        f"Last good checkpoint: {where}. Lower config.optim.learning_rate, enable "
        "config.optim.grad_clip_norm, or check the data of that step.")


class _Rate:
    """Steps per second between consecutive log steps."""

    def __init__(self, step: int):
        self.step, self.time = step, time.perf_counter()

    def __call__(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.step) / max(now - self.time, 1e-9)
        self.step, self.time = step, now
        return rate


def _shorten(config, state, total: int, bar: ProgressBar, compile_step):
    """(state, schedule, train step) of a plan of `total` steps (segjax.train.budget)."""
    state, schedule = _with_schedule(config, state, total)
    bar.set_total(total)
    return state, schedule, compile_step(state)


def _with_schedule(config, state, steps: int):
    """(state with the optimiser of a `steps`-step schedule, that schedule); see budget."""
    tx, schedule = optim.make_optimizer(config.optim, steps)
    return state.replace(tx=tx), schedule


def _training_record(config, schedule, step: int, total: int) -> dict:
    """What eval_metrics.json says of the training: steps done, planned, and the last lr."""
    return {"steps": int(step), "schedule_steps": int(total),
            "config_steps": int(config.train.steps),
            "max_minutes": float(config.train.max_minutes),
            "learning_rate": optim.learning_rate_at(schedule, config.optim, max(step - 1, 0))}


def _log_train_metrics(config, schedule, writer: MetricWriter, bar: ProgressBar, accumulator,
                       step: int, rate: float, total: int) -> None:
    means = step_lib.summarize(accumulator)
    scalars = {f"train/{name}": value for name, value in means.items()}
    scalars["train/learning_rate"] = optim.learning_rate_at(schedule, config.optim, step - 1)
    scalars["train/steps_per_second"] = rate
    writer.write_scalars(step, scalars)
    bar.update(step, means["loss"])
    line = (f"step {step}/{total}: loss {means['loss']:.4f}, lr "
            f"{scalars['train/learning_rate']:.3g}, {rate:.2f} steps/s")
    if bar.enabled:
        tqdm.tqdm.write(line)  # above the bar, not through it
    else:
        _log(line)


def _summary(workdir: Path, saver: ckpt.TrainingCheckpoints, best_miou: float) -> str:
    lines = [f"finished; outputs in {workdir}:",
             f"  checkpoints:   {saver.directory} (steps {saver.manager.all_steps()})",
             f"  best:          {workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE} (mIoU "
             f"{100 * max(best_miou, 0):.2f})",
             f"  tensorboard:   tensorboard --logdir {workdir / TENSORBOARD_DIR}",
             f"  metrics:       {workdir / METRICS_FILE}",
             f"  evaluation:    {workdir / EVAL_FILE}",
             f"  overlays:      {workdir / PREDICTIONS_DIR}/"]
    return "\n".join(lines)


def _close_quietly(writer: MetricWriter) -> None:
    """Closes the writer; a full disk while flushing its last records is already reported."""
    try:
        writer.close()
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise


# --------------------------------------------------------------------------------------
# Validation.

class _Validation:
    """The validation split, its predict programs (compiled once per run) and the best mIoU.

    `run(step, variables, ...)` binds the current weights to the same
    compiled programs, evaluates with `segjax.evaluation.evaluate`, writes
    the reports and keeps the best checkpoint.
    """

    def __init__(self, config, workdir: Path, model, mesh, policy: ApplyPolicy, variables):
        from segjax import data as data_lib
        self.config, self.workdir = config, workdir
        self.examples = data_lib.load_split(config.data, config.data.val_split,
                                            decode_all=True)
        self.options = config_lib.EvalOptions.from_config(config)
        self.logits = evaluation.logits_program(model, mesh, policy)
        self.panoptic = evaluation.panoptic_program(model, variables, config, mesh, policy)
        best = ckpt.best_record(workdir, log=_log)
        self.best_miou = float(best["miou"]) if best else -1.0

    def run(self, step: int, variables: dict, writer: MetricWriter, *, final: bool,
            training: dict | None = None) -> dict:
        result, predictions = evaluation.evaluate(
            self.logits.bind(variables), self.config, self.examples, self.options,
            keep_predictions=int(self.config.train.num_overlays),
            panoptic_fn=self.panoptic.bind(variables) if self.panoptic else None)
        self._log(step, result, writer)
        if _is_main():
            self._write(step, result, predictions, writer, final=final, training=training)
        self._keep_best(step, variables, float(result["miou"]))
        return result

    def _log(self, step: int, result: dict, writer: MetricWriter) -> None:
        config = self.config
        scalars = metrics_lib.scalar_metrics(result, prefix="val/")
        scalars["val/seconds"] = result["seconds"]
        writer.write_scalars(step, scalars)
        names = evaluation.class_names(config)
        _log(f"evaluation at step {step} on {config.data.val_split} ({result['num_images']} "
             f"images, {result['seconds']:.1f}s): mIoU {100 * result['miou']:.2f}, pixel "
             f"accuracy {100 * result['pixel_accuracy']:.2f}\n"
             + metrics_lib.format_metrics_table(result, names)
             + (f"\nPQ {100 * result['pq']:.2f}, SQ {100 * result['sq']:.2f}, RQ "
                f"{100 * result['rq']:.2f}\n" + panoptic_quality.format_pq_table(
                    result, names, result["thing_classes"])
                if "pq" in result else ""))

    def _write(self, step: int, result: dict, predictions, writer: MetricWriter, *,
               final: bool, training: dict | None = None) -> None:
        """eval_metrics.json, validation panels in TensorBoard and, at the end, overlay PNGs."""
        config = self.config
        record = {"step": step, "split": config.data.val_split,
                  "options": evaluation.options_record(self.options), **result}
        if training:
            record["training"] = training
        paths.write_text(self.workdir / EVAL_FILE,
                         json.dumps(record, indent=2, allow_nan=True) + "\n")
        examples = self.examples[:len(predictions)]
        colours = visualize.class_colours(config)
        ignore_index = int(config.data.ignore_index)
        writer.write_images(step, {
            f"val/{visualize.example_stem(example, index)}": visualize.overlay_panel(
                example["image"], prediction, example.get("label"), colours=colours,
                ignore_index=ignore_index)
            for index, (example, prediction) in enumerate(zip(examples, predictions))})
        if final:
            visualize.write_overlays(config, examples, predictions,
                                     self.workdir / PREDICTIONS_DIR)

    def _keep_best(self, step: int, variables: dict, miou: float) -> None:
        """Saves the weights as the best checkpoint when `miou` beats the best so far."""
        if not (np.isfinite(miou) and miou > self.best_miou):
            return
        self.best_miou = miou
        variables = jax.tree_util.tree_map(sharding.local_value, variables)
        if _is_main():
            ckpt.save_best(self.workdir, variables, self.config, step=step, miou=miou)
