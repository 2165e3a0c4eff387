"""Command line: train and evaluate one experiment config.

    python -m segjax.main --config configs/unet_isbi.py --workdir runs/unet_isbi
    python -m segjax.main --config configs/unet_isbi.py:smoke --workdir /tmp/smoke \
        --config.train.steps=200

`--config.<section>.<key>=value` overrides any config field; configs are
locked, so a misspelt key fails naming it. Errors are one line (`segjax.cli.run`:
status 2 for a flag or config value, 1 for a failure; `--debug` shows the
traceback). Running again with the same --workdir resumes from its latest
checkpoint. Installed as `segjax-train`.

A SIGTERM (a preemption) stops training after the current step with a
checkpoint; the run prints one line saying so and exits 0, and the same
command resumes it. Ctrl-C (SIGINT) does the same and exits 130 (a second
Ctrl-C within a second changes nothing; a later one aborts at once). Several processes (hosts) run the same command with
--distributed (JAX finds the cluster: Cloud TPU pods, Slurm) or with
--coordinator_address/--num_processes/--process_id (experiments/launch/local.py);
see docs/scale.md.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags, logging

from segjax import cli


def define_flags(values: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None,
                        "Directory for checkpoints, logs and results: a local path or "
                        "gs://bucket/path.",
                        flag_values=values)
    flags.DEFINE_bool("distributed", False, "Join a multi-process run: jax.distributed."
                      "initialize with the cluster found by JAX (Cloud TPU pods, Slurm, "
                      "Open MPI).", flag_values=values)
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process "
                        "runs without cluster detection; with --num_processes and "
                        "--process_id).", flag_values=values)
    flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.",
                         flag_values=values)
    flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.",
                         flag_values=values)
    flags.DEFINE_integer("verbosity", logging.WARNING, "absl logging level (Orbax and grain "
                         "log every checkpoint step at 0, INFO).", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
    values, config = cli.parse(argv, define_flags, doc=__doc__, program="python -m segjax.main")
    if not values.workdir:
        raise cli.UsageError("--workdir is required")
    # Orbax and grain log every checkpoint step at INFO through absl; segjax
    # prints its own progress, so keep absl to warnings unless asked otherwise.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.set_verbosity(values.verbosity)
    initialize_distributed(values)
    from segjax.train.loop import PREEMPTED, STOP_SIGNAL, train_and_evaluate
    result = train_and_evaluate(config, values.workdir)
    if PREEMPTED not in result:
        return 0
    print(f"preempted: {result[PREEMPTED]}", flush=True)
    return cli.INTERRUPTED if result[STOP_SIGNAL] == "SIGINT" else 0


def initialize_distributed(values: flags.FlagValues) -> None:
    """jax.distributed.initialize from --distributed or the explicit process flags."""
    explicit = [values.coordinator_address, values.num_processes, values.process_id]
    if not values.distributed and all(value is None for value in explicit):
        return
    if not values.distributed and any(value is None for value in explicit):
        raise cli.UsageError("--coordinator_address, --num_processes and --process_id go "
                             "together (or use --distributed to let JAX find the cluster)")
    from segjax import runtime
    runtime.initialize_distributed(values.coordinator_address, values.num_processes,
                                   values.process_id)


def run() -> None:
    """Console entry point (`segjax-train`): errors as one line (`segjax.cli.run`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
