"""Command line: train and evaluate one experiment config.

    python -m segjax.main --config configs/unet_isbi.py --workdir runs/unet_isbi
    python -m segjax.main --config configs/unet_isbi.py:smoke --workdir /tmp/smoke \
        --config.train.steps=200

`--config.<section>.<key>=value` overrides any config field; configs are
locked, so a misspelt key fails naming it. Running again with the same
--workdir resumes from its latest checkpoint. Installed as `segjax-train`.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:argument]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Orbax and grain log every checkpoint step at INFO through absl; segjax
    # prints its own progress, so keep absl to warnings unless asked otherwise.
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from segjax.train.loop import train_and_evaluate
    try:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except user_errors() as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message says all a user needs: printed as one line, no traceback."""
    from segjax.config import ConfigError
    from segjax.train.checkpoint import CheckpointError
    from segjax.train.loop import TrainingDiverged
    from segjax.train.workdir import WorkdirBusy
    return (ConfigError, CheckpointError, TrainingDiverged, WorkdirBusy, PermissionError)


def run() -> None:
    """Console entry point (`segjax-train`)."""
    app.run(main)


if __name__ == "__main__":
    run()
