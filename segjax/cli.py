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
changes one test-time option of the run's own settings.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from segjax import checkpoints, config as config_lib

DefineFlags = Callable[[flags.FlagValues], None]
HELP = ("-h", "--help", "--helpfull")


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


def _flag_values(define_flags: DefineFlags) -> flags.FlagValues:
    values = flags.FlagValues()
    values.set_gnu_getopt(True)
    define_flags(values)
    return values


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
    values = _flag_values(define_flags)
    try:  # config_flags defines the override flags (and checks their fields) here
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


def run(main: Callable[[], int]) -> None:
    """Runs an entry point's `main()` from the shell: a usage error is one line and exit 2."""
    try:
        code = main()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)
