"""`train_and_evaluate(config, workdir)`: the training loop.

What a run writes under `workdir`:

    config.json                   the full config (segjax.checkpoints.stored_config reads it)
    checkpoints/<step>/           Orbax: state/ (params, batch_stats, opt_state, step),
                                  data/ (each process's grain iterator state), meta/
    checkpoints_best/variables    best validation mIoU so far (segjax.checkpoints format)
    tensorboard/                  event files (loss, lr, steps/s, validation metrics, images)
    metrics.jsonl                 one JSON line per log / eval step
    eval_metrics.json             the last evaluation (mIoU, per-class IoU, pixel accuracy, ...;
                                  PQ, SQ, RQ for panoptic models)
    predictions/<name>.png        image | prediction overlay | errors vs label (last evaluation)

Restarting with the same workdir resumes from the latest checkpoint, data
iterator included, so the run continues as if never stopped. A non-finite
loss stops the run with `TrainingDiverged` naming the step and the last good
checkpoint; a non-finite state is never saved. `config.train.max_minutes`
bounds the training time (evaluation excluded); the decision is taken at log
steps and shared by all processes. A SIGTERM stops the run after the current
step with a checkpoint of it (`segjax.train.preemption`: `Preempted` is
raised, and every process stops after the same step). With several processes
only process 0 writes files; all of them run the same steps and evaluations.

The train state is laid out by `config.mesh` (replicated, or FSDP / rules:
`segjax.sharding`), and a checkpoint restores into the layout of the mesh
the run has now, so a run continues on another number of devices or
processes. The model is applied under `config.model.dtype` and
`config.train.remat` (`segjax.models.policy`).
"""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np
import tqdm

from segjax import config as config_lib, evaluation, metrics as metrics_lib, optim, runtime
from segjax import checkpoints, sharding, visualize
from segjax.models.policy import ApplyPolicy
from segjax.models.segmenter import count_params
from segjax.train import checkpoint as ckpt
from segjax.panoptic import quality as panoptic_quality
from segjax.train import state as state_lib, step as step_lib
from segjax.train.logging import METRICS_FILE, TENSORBOARD_DIR, MetricWriter, ProgressBar
from segjax.train.preemption import Preempted, PreemptionWatch
from segjax.train.workdir import WorkdirLock, check_writable

EVAL_FILE = "eval_metrics.json"
PREDICTIONS_DIR = "predictions"

Hook = Callable[[int, state_lib.TrainState], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def write_config(config, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / checkpoints.CONFIG_FILE).write_text(config.to_json_best_effort(indent=2) + "\n")


def _is_main() -> bool:
    return jax.process_index() == 0


def _log(message: str) -> None:
    if _is_main():
        print(message, flush=True)


def _agree(flag: bool) -> bool:
    """Process 0's value of `flag` on every process (decisions must not diverge)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(multihost_utils.broadcast_one_to_all(np.bool_(flag)))


# --------------------------------------------------------------------------------------
# The loop.

class _Run:
    """The pieces of one training run, built from the config."""

    def __init__(self, config, workdir: Path):
        from segjax import data as data_lib
        from segjax.models import registry

        self.config, self.workdir = config, workdir
        registry.import_modules(config.imports)
        self.model = registry.build(config.model)
        self.mesh = sharding.make_mesh(config.mesh)
        sharding.check_batch_size(int(config.data.batch_size), self.mesh)
        self.num_classes = int(config.model.num_classes)
        self.ignore_index = int(config.data.ignore_index)

        self.policy = ApplyPolicy.from_config(config)
        self.loader = self.make_loader(0)
        seed = int(config.train.seed)
        self.dropout_rng = jax.random.fold_in(runtime.key(seed), 1)
        input_shape = (1, *config.data.crop, int(config.data.image_channels))
        state, self.schedule = state_lib.create_train_state(
            config, self.model, state_lib.init_key(seed), input_shape)
        self.state_shardings = sharding.tree_shardings(state, self.mesh, config.mesh)
        self.state = sharding.place(sharding.same_on_all_processes(state), self.state_shardings)
        self.checkpoints = ckpt.TrainingCheckpoints(workdir, config, log=_log)
        try:
            self.state, self.start_step = self.checkpoints.restore(self.state, self.loader)
            if self.start_step and not self.checkpoints.data_restored:
                self.loader.close()  # resumes the data stream by position instead
                self.loader = self.make_loader(self.start_step)
        except BaseException:
            self.close()
            raise
        self.train_fn = step_lib.compile_train_step(
            self.mesh, model=self.model, loss_config=config.loss, num_classes=self.num_classes,
            ignore_index=self.ignore_index, policy=self.policy,
            state_shardings=self.state_shardings, mesh_config=config.mesh)
        self.eval_options = config_lib.EvalOptions.from_config(config)
        self.val_examples = data_lib.load_split(config.data, config.data.val_split) \
            if config.data.val_split else []
        best = ckpt.best_record(workdir)
        self.best_miou = float(best["miou"]) if best else -1.0
        self.last_saved = self.start_step if self.start_step else None

    def make_loader(self, start_step: int):
        from segjax import data as data_lib
        return data_lib.make_train_loader(
            self.config.data, seed=int(self.config.train.seed),
            process_index=jax.process_index(), process_count=jax.process_count(),
            start_step=start_step)

    def variables(self) -> dict:
        return {"params": self.state.params, "batch_stats": self.state.batch_stats}

    def close(self) -> None:
        self.checkpoints.close()
        if hasattr(self.loader, "close"):
            self.loader.close()  # stops grain worker processes

    def predict_fn(self) -> evaluation.PredictFn:
        """Inference with the current weights, its tiles split over the run's mesh."""
        return evaluation.make_predict_fn(self.model, self.variables(), self.mesh,
                                          policy=self.policy)

    def panoptic_fn(self) -> evaluation.PanopticFn | None:
        """Panoptic maps with the current weights (None unless the model is panoptic)."""
        return evaluation.make_panoptic_fn(self.model, self.variables(), self.config, self.mesh,
                                           policy=self.policy)

    def next_batch(self, step: int) -> dict:
        batch = next(self.loader)
        metrics_lib.validate_labels(batch["label"], self.num_classes, self.ignore_index,
                                    where=f"training batch of step {step}")
        return sharding.global_batch(batch, self.mesh)


def _diverged(run: _Run, bad_step: int) -> TrainingDiverged:
    where = (f"step {run.last_saved} in {run.checkpoints.directory}" if run.last_saved
             else "none (no checkpoint was saved)")
    return TrainingDiverged(
        f"loss is not finite (NaN or inf) at step {bad_step}; stopped without saving. "
        f"Last good checkpoint: {where}. Lower config.optim.learning_rate, enable "
        "config.optim.grad_clip_norm, or check the data of that step.")


def _check_finite(run: _Run, accumulator) -> None:
    first = int(sharding.local_value(accumulator["first_nonfinite_step"]))
    if first != step_lib.NO_STEP:
        raise _diverged(run, first)
    if not step_lib.tree_is_finite(run.variables()):
        raise _diverged(run, int(sharding.local_value(run.state.step)))


def _log_evaluation(run: _Run, step: int, result: dict, writer: MetricWriter) -> None:
    config = run.config
    scalars = metrics_lib.scalar_metrics(result, prefix="val/")
    scalars["val/seconds"] = result["seconds"]
    writer.write_scalars(step, scalars)
    _log(f"evaluation at step {step} on {config.data.val_split} ({result['num_images']} "
         f"images, {result['seconds']:.1f}s): mIoU {100 * result['miou']:.2f}, pixel accuracy "
         f"{100 * result['pixel_accuracy']:.2f}\n"
         + metrics_lib.format_metrics_table(result, evaluation.class_names(config))
         + (f"\nPQ {100 * result['pq']:.2f}, SQ {100 * result['sq']:.2f}, RQ "
            f"{100 * result['rq']:.2f}\n" + panoptic_quality.format_pq_table(
                result, evaluation.class_names(config), result["thing_classes"])
            if "pq" in result else ""))


def _write_evaluation(run: _Run, step: int, result: dict, predictions, writer: MetricWriter,
                      *, final: bool) -> None:
    """eval_metrics.json, validation panels in TensorBoard and, at the end, overlay PNGs."""
    config = run.config
    record = {"step": step, "split": config.data.val_split,
              "options": evaluation.options_record(run.eval_options), **result}
    (run.workdir / EVAL_FILE).write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    examples = run.val_examples[:len(predictions)]
    colours = visualize.class_colours(config)
    writer.write_images(step, {
        f"val/{visualize.example_stem(example, index)}": visualize.overlay_panel(
            example["image"], prediction, example.get("label"), colours=colours,
            ignore_index=run.ignore_index)
        for index, (example, prediction) in enumerate(zip(examples, predictions))})
    if final:
        visualize.write_overlays(config, examples, predictions, run.workdir / PREDICTIONS_DIR)


def _keep_best(run: _Run, step: int, miou: float) -> None:
    """Saves the weights as the best checkpoint when `miou` beats the best so far."""
    if not (np.isfinite(miou) and miou > run.best_miou):
        return
    run.best_miou = miou
    variables = jax.tree_util.tree_map(sharding.local_value, run.variables())
    if _is_main():
        ckpt.save_best(run.workdir, variables, run.config, step=step, miou=miou)


def _run_evaluation(run: _Run, step: int, writer: MetricWriter, *, final: bool) -> dict:
    """`segjax.evaluation.evaluate` on the validation split, its reports, the best checkpoint."""
    result, predictions = evaluation.evaluate(
        run.predict_fn(), run.config, run.val_examples, run.eval_options,
        keep_predictions=int(run.config.train.num_overlays), panoptic_fn=run.panoptic_fn())
    _log_evaluation(run, step, result, writer)
    if _is_main():
        _write_evaluation(run, step, result, predictions, writer, final=final)
    _keep_best(run, step, float(result["miou"]))
    return result


def _summary(run: _Run) -> str:
    workdir = run.workdir
    lines = [f"finished; outputs in {workdir}:",
             f"  checkpoints:   {run.checkpoints.directory} (steps {run.checkpoints.manager.all_steps()})",
             f"  best:          {workdir / checkpoints.BEST_DIR / checkpoints.BEST_FILE} (mIoU "
             f"{100 * max(run.best_miou, 0):.2f})",
             f"  tensorboard:   tensorboard --logdir {workdir / TENSORBOARD_DIR}",
             f"  metrics:       {workdir / METRICS_FILE}",
             f"  evaluation:    {workdir / EVAL_FILE}",
             f"  overlays:      {workdir / PREDICTIONS_DIR}/"]
    return "\n".join(lines)


class _Rate:
    """Steps per second between consecutive log steps."""

    def __init__(self, step: int):
        self.step, self.time = step, time.perf_counter()

    def __call__(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.step) / max(now - self.time, 1e-9)
        self.step, self.time = step, now
        return rate


def _log_train_metrics(run: _Run, writer: MetricWriter, bar: ProgressBar, accumulator,
                       step: int, rate: float) -> None:
    config = run.config
    means = step_lib.summarize(accumulator)
    scalars = {f"train/{name}": value for name, value in means.items()}
    scalars["train/learning_rate"] = optim.learning_rate_at(run.schedule, config.optim,
                                                                step - 1)
    scalars["train/steps_per_second"] = rate
    writer.write_scalars(step, scalars)
    bar.update(step, means["loss"])
    line = (f"step {step}/{config.train.steps}: loss {means['loss']:.4f}, lr "
            f"{scalars['train/learning_rate']:.3g}, {rate:.2f} steps/s")
    if bar.enabled:
        tqdm.tqdm.write(line)  # above the bar, not through it
    else:
        _log(line)


def _stop_preempted(run: _Run, step: int, accumulator) -> None:
    """Saves step `step` (unless just saved) and raises `Preempted`."""
    if run.last_saved != step:
        _check_finite(run, accumulator)
        run.checkpoints.save(step, run.state, run.loader)
        run.last_saved = step
    raise Preempted(step, run.checkpoints.directory)


def _train(run: _Run, writer: MetricWriter, bar: ProgressBar, hooks: Sequence[Hook],
           watch: PreemptionWatch) -> dict:
    """Steps from run.start_step to config.train.steps (or the time budget); the last eval."""
    config, train = run.config, run.config.train
    total, step, result = int(train.steps), run.start_step, None
    budget, train_seconds, rate = float(train.max_minutes) * 60.0, 0.0, _Rate(step)
    names = accumulator = None
    while step < total:
        started = time.perf_counter()
        batch = run.next_batch(step + 1)
        if accumulator is None:
            names = step_lib.metric_names(run.state, batch, run.model, config.loss,
                                          run.num_classes, run.ignore_index, run.policy)
            accumulator = sharding.replicate(step_lib.empty_accumulator(names), run.mesh)
        run.state, accumulator = run.train_fn(run.state, accumulator, batch, run.dropout_rng)
        step += 1
        # Several devices/processes: an unbounded dispatch queue can hang. CPU:
        # compute shares the cores with dispatch, so blocking costs nothing and
        # keeps the progress bar's rate and the time budget honest.
        if (jax.process_count() > 1 or jax.local_device_count() > 1
                or jax.default_backend() == "cpu"):
            jax.block_until_ready(accumulator)

        last = step == total
        if step % int(train.log_every) == 0 or last:
            _check_finite(run, accumulator)
            train_seconds += time.perf_counter() - started  # the sync above included
            _log_train_metrics(run, writer, bar, accumulator, step, rate(step))
            accumulator = sharding.replicate(step_lib.empty_accumulator(names), run.mesh)
            if budget and _agree(train_seconds > budget):
                _log(f"stopping at step {step}: config.train.max_minutes={train.max_minutes} "
                     "reached")
                last = True
        else:
            train_seconds += time.perf_counter() - started
            bar.update(step)
        if watch.should_stop(step):
            _stop_preempted(run, step, accumulator)
        if step % int(train.checkpoint_every) == 0 or last:
            _check_finite(run, accumulator)
            run.checkpoints.save(step, run.state, run.loader)
            run.last_saved = step
        if config.data.val_split and (step % int(train.eval_every) == 0 or last):
            result = _run_evaluation(run, step, writer, final=last)
        for hook in hooks:
            hook(step, run.state)
        if last:
            break
    if result is None and config.data.val_split:
        result = _run_evaluation(run, step, writer, final=True)
    return result or {}


def train_and_evaluate(config, workdir, *, hooks: Sequence[Hook] = ()) -> dict:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the last eval.

    Before any work: the config's counts are validated, the workdir is
    locked against a second run and checked writable. The resume check
    (`TrainingCheckpoints.restore`) runs before config.json is written, so a
    refused resume leaves the workdir as it was. `hooks` are called as
    hook(step, state) after every step, once the step's logging, checkpoint
    and evaluation are done.
    """
    workdir = Path(workdir).resolve()
    config_lib.validate(config)
    runtime.configure(config)
    with WorkdirLock(workdir, enabled=_is_main()), PreemptionWatch() as watch:
        if _is_main():
            check_writable(workdir, workdir / checkpoints.CHECKPOINTS_DIR)
        return _train_in(config, workdir, hooks, watch)


def _train_in(config, workdir: Path, hooks: Sequence[Hook], watch: PreemptionWatch) -> dict:
    run = _Run(config, workdir)
    try:
        if _is_main():
            write_config(config, workdir)
        _log(f"model {config.model.name}: {count_params(run.variables()):,} parameters; mesh "
             f"{dict(run.mesh.shape)} over {jax.device_count()} devices, "
             f"{jax.process_count()} process(es); train state "
             f"{config.mesh.get('param_sharding', 'replicated')}, "
             f"{sharding.bytes_per_device(run.state) / 2 ** 20:.1f} MiB per device; compute "
             f"{run.policy.compute_dtype}; "
             + (f"resumed at step {run.start_step}" if run.start_step else "starting from step 0"))
        writer = MetricWriter(workdir, console=False, enabled=_is_main(),
                              resume_step=run.start_step)
        bar = ProgressBar(int(config.train.steps), run.start_step,
                          enabled=bool(config.train.progress_bar) and _is_main())
        try:
            result = _train(run, writer, bar, hooks, watch)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise ckpt.CheckpointError(
                f"the disk is full ({error.filename or workdir}: {error.strerror}); training "
                f"stopped, the latest checkpoint (step {run.last_saved}) is intact") from None
        finally:
            bar.close()
            _close_quietly(writer)
    finally:
        run.close()
    _log(_summary(run))
    return result


def _close_quietly(writer: MetricWriter) -> None:
    """Closes the writer; a full disk while flushing its last records is already reported."""
    try:
        writer.close()
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
