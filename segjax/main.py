"""Command line: train and evaluate one experiment config.

    python -m segjax.main --config configs/unet_isbi.py --workdir runs/unet_isbi
    python -m segjax.main --config configs/unet_isbi.py:smoke --workdir /tmp/smoke \
        --config.train.steps=200

`--config.<section>.<key>=value` overrides any config field; configs are
locked, so a misspelt key fails naming it. Running again with the same
--workdir resumes from its latest checkpoint. Installed as `segjax-train`.

A SIGTERM (a preemption) stops training after the current step with a
checkpoint; the run prints one line saying so and exits 0, and the same
command resumes it. Several processes (hosts) run the same command with
--distributed (JAX finds the cluster: Cloud TPU pods, Slurm) or with
--coordinator_address/--num_processes/--process_id (experiments/launch/local.py);
see docs/scale.md.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:argument]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.DEFINE_bool("distributed", False, "Join a multi-process run: jax.distributed.initialize "
                  "with the cluster found by JAX (Cloud TPU pods, Slurm, Open MPI).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs "
                    "without cluster detection; with --num_processes and --process_id).")
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Orbax and grain log every checkpoint step at INFO through absl; segjax
    # prints its own progress, so keep absl to warnings unless asked otherwise.
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    initialize_distributed()
    from segjax.train.loop import PREEMPTED, train_and_evaluate
    try:
        result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except user_errors() as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    if PREEMPTED in result:
        print(f"preempted: {result[PREEMPTED]}", flush=True)


def initialize_distributed() -> None:
    """jax.distributed.initialize from --distributed or the explicit process flags."""
    explicit = [FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id]
    if not FLAGS.distributed and all(value is None for value in explicit):
        return
    if not FLAGS.distributed and any(value is None for value in explicit):
        raise app.UsageError("--coordinator_address, --num_processes and --process_id go "
                             "together (or use --distributed to let JAX find the cluster)")
    from segjax import runtime
    runtime.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                   FLAGS.process_id)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message says all a user needs: printed as one line, no traceback."""
    from segjax.config import ConfigError
    from segjax.pretrained import DownloadError, PretrainedError
    from segjax.train.checkpoint import CheckpointError
    from segjax.train.loop import TrainingDiverged
    from segjax.train.workdir import WorkdirBusy
    return (ConfigError, CheckpointError, TrainingDiverged, WorkdirBusy, PermissionError,
            DownloadError, PretrainedError)


def run() -> None:
    """Console entry point (`segjax-train`)."""
    app.run(main)


if __name__ == "__main__":
    run()
