"""Command-line flags of the inference entry points (predict, evaluate, export) and experiments.

    --workdir RUN | --checkpoint PATH    where the model comes from (exactly one)
    --config path/to/config.py[:arg]     the run's config (default: the config the run stored)
    --config.<section>.<key>=VALUE       overrides, as for training: --config.eval.flip=True,
                                         --config.eval.scales='(0.75, 1.0, 1.25)',
                                         --config.eval.crf_params.bi_w=5,
                                         --config.runtime.conv_impl=native

Flags are absl flags and the config is an ml_collections `config_flags`
config, as in `segjax.main`; each call of `parse` builds its own
`flags.FlagValues`, so entry points can be called one after another in one
process (tests, notebooks). `--config` defaults to the run's stored config
(`segjax.checkpoints.stored_config`), so `--config.eval.flip=True` alone
changes one test-time option of the run's own settings. A misspelt override
(`--config.train.stpes=3`) is a usage error naming the key.

`run(main)` is every entry point's shell wrapper (segjax.main, predict,
evaluate, export, convert, pretrained, data.builders): an error whose message
is meant for the user prints as `error: <message>` with exit status 2 for a
usage error (a flag, a config value, an output it would replace: `UsageError`,
`ConfigError`, `FileExistsError`) and 1 for
a failure (a missing file, a damaged checkpoint, a diverged run: `ValueError`,
`KeyError`, the file errors of `OSError`, and segjax's own exception classes);
anything else is a bug and keeps its traceback. `--debug` shows the traceback
of every error; Ctrl-C is `interrupted` and status 130.
"""

from __future__ import annotations

import difflib
import sys
from typing import Callable, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from segjax import checkpoints, config as config_lib

DefineFlags = Callable[[flags.FlagValues], None]
HELP = ("-h", "--help", "--helpfull")
DEBUG = "--debug"
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


class UsageError(ValueError):
    """A command line that cannot be parsed; the message names the flag."""


def define_checkpoint_flags(values: flags.FlagValues) -> None:
    """--workdir RUN or --checkpoint PATH (`checkpoint_path` checks that exactly one is given)."""
    flags.DEFINE_string("workdir", None, "A training run directory (its latest checkpoint).",
                        flag_values=values)
    flags.DEFINE_string("checkpoint", None, "A checkpoint directory or a variables checkpoint.",
                        flag_values=values)


def checkpoint_path(values: flags.FlagValues) -> str:
    if bool(values.workdir) == bool(values.checkpoint):
        raise UsageError("give exactly one of --workdir or --checkpoint")
    return values.workdir or values.checkpoint


def run_config(values: flags.FlagValues) -> ml_collections.ConfigDict:
    """The stored config of the run --workdir / --checkpoint names."""
    return checkpoints.stored_config(checkpoint_path(values))


def _without_config_file(argv: Sequence[str]) -> list[str]:
    """argv without `--config PATH` / `--config=PATH` (its `--config.x=v` overrides stay)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--config", "-config"):
            skip = True
        elif not arg.startswith(("--config=", "-config=")):
            kept.append(arg)
    return kept


def define_debug_flag(values: flags.FlagValues) -> None:
    """--debug: errors keep their traceback (`run` reads it from the command line)."""
    flags.DEFINE_bool("debug", False, "Show the traceback of an error (not one line).",
                      flag_values=values)


def _flag_values(define_flags: DefineFlags) -> flags.FlagValues:
    values = flags.FlagValues()
    values.set_gnu_getopt(True)
    define_debug_flag(values)
    define_flags(values)
    return values


def _override_key(arg: str) -> str | None:
    """'train.steps' of '--config.train.steps=3' (or '--noconfig.eval.flip'); else None."""
    name = arg.lstrip("-").split("=", 1)[0]
    for prefix in ("config.", "noconfig."):
        if name.startswith(prefix) and arg.startswith("-"):
            return name[len(prefix):]
    return None


def check_override_keys(argv: Sequence[str], base: ml_collections.ConfigDict) -> None:
    """UsageError naming the first `--config.<key>` override that is not a field of `base`."""
    for arg in argv:
        key = _override_key(arg)
        if not key:
            continue
        node, walked = base, "config"
        for part in key.split("."):
            fields = list(node.keys()) if hasattr(node, "keys") else []
            if part not in fields:
                close = difflib.get_close_matches(part, [str(f) for f in fields], n=1)
                hint = f"; did you mean {walked}.{close[0]}?" if close else ""
                raise UsageError(f"--config.{key}: {walked} has no field {part!r}{hint}")
            node, walked = node[part], f"{walked}.{part}"


def _base_config(located: flags.FlagValues, default_config) -> ml_collections.ConfigDict:
    """The --config file's config, else `default_config(located)`."""
    if located.config:
        return config_lib.load(located.config)
    if default_config is None:
        raise UsageError("--config path/to/config.py[:arg] is required")
    return default_config(located)


def _with_overrides(argv: list[str], define_flags: DefineFlags,
                    base: ml_collections.ConfigDict) -> flags.FlagValues:
    """Every flag of `argv` parsed, `base` locked and changed by the --config.* overrides."""
    check_override_keys(argv[1:], base)
    values = _flag_values(define_flags)
    try:  # config_flags defines the override flags (and checks their values) here
        config_flags.DEFINE_config_dict("config", base, "The run's config.", flag_values=values,
                                        lock_config=True, sys_argv=argv)
        rest = values(argv)[1:]
    except flags.Error as error:
        raise UsageError(str(error)) from None
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # config_flags' own
        detail = error
        while isinstance(detail, BaseException) and detail.args:
            detail = detail.args[0]
        raise UsageError(f"--config override: unknown or invalid field "
                         f"{' '.join(str(detail).split())}") from None
    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    return values


def parse(argv: Sequence[str] | None, define_flags: DefineFlags, *, doc: str,
          default_config: Callable[[flags.FlagValues], ml_collections.ConfigDict] | None = None,
          program: str = "segjax") -> tuple[flags.FlagValues, ml_collections.ConfigDict]:
    """(flag values, config) of a command line (without the program name).

    The config is `--config path.py[:arg]` or, without one, `default_config(flags)`
    (an error when there is none), locked, with the `--config.*` overrides
    applied. `--help` prints `doc` and the flags of `program` and exits.
    """
    argv = ["segjax", *(sys.argv[1:] if argv is None else argv)]
    # First pass: the flags that say where the base config comes from; the --config.*
    # overrides can only be defined once that config exists.
    located = _flag_values(define_flags)
    flags.DEFINE_string("config", None, "The run's config file, path.py[:arg] (default: the "
                        "config the run stored); --config.<key>=value overrides it.",
                        flag_values=located)
    if any(arg in HELP for arg in argv[1:]):
        print(f"usage: {program} [--flag=value ...] [--config.<key>=value ...]\n\n{doc}\n"
              f"flags:\n{located.get_help()}")
        raise SystemExit(0)
    try:
        located(argv, known_only=True)
    except flags.Error as error:
        raise UsageError(str(error)) from None
    base = _base_config(located, default_config)
    values = _with_overrides(_without_config_file(argv), define_flags, base)
    return values, values.config


def _message(error: BaseException) -> str:
    """An error's message (a KeyError's without the quotes its str adds)."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


# FileExistsError: an output the command would replace (predict, convert without --overwrite).
USAGE_ERRORS: tuple[type[BaseException], ...] = (UsageError, config_lib.ConfigError,
                                                 flags.Error, FileExistsError)
FAILURES: tuple[type[BaseException], ...] = (
    ValueError, KeyError, FileNotFoundError, PermissionError, IsADirectoryError,
    NotADirectoryError, checkpoints.CheckpointError)


def exit_code(error: BaseException) -> int | None:
    """2 for a usage error, 1 for a failure told in its message, None for a bug (traceback).

    segjax's own exception classes (TrainingDiverged, WorkdirBusy, DownloadError, ...)
    are failures whose message says what happened; entry points need not import them.
    """
    if isinstance(error, USAGE_ERRORS) or type(error).__name__ == "UsageError":
        return 2  # absl.app.UsageError too
    if isinstance(error, FAILURES) or type(error).__module__.split(".")[0] == "segjax":
        return 1
    return None


def invoke(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None
           ) -> int:
    """`main(argv)`'s exit status, a user's error printed as one `error:` line on stderr.

    With --debug in `argv` every error propagates with its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG in argv
    try:
        code = main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED
    except Exception as error:  # pylint: disable=broad-except
        code = exit_code(error)
        if code is None or debug:
            raise
        print(f"error: {_message(error)}", file=sys.stderr, flush=True)
        return code
    return code if isinstance(code, int) else 0


def run(main: Callable[[Sequence[str]], int | None]) -> None:
    """Runs an entry point's `main(argv)` from the shell (`invoke`) and exits with its status."""
    sys.exit(invoke(main))
