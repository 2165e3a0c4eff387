"""Build a segjax tfds dataset from a local folder (or, where public, by downloading it):

    python -m segjax.data.builders NAME --source DIR [--data_dir OUT]
    python -m segjax.data.builders --name NAME [--local_dir DIR] --data_dir OUT   (same)

OUT defaults to $TFDS_DATA_DIR or ~/tensorflow_datasets, where the "tfds" source
(data.source='tfds', data.tfds_name=NAME, data.root=OUT) reads it. Errors are one
line (`segjax.cli.run`; --debug shows the traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import flags

from segjax import cli
from segjax.data.builders import BUILDERS, prepare


def define_flags(values: flags.FlagValues) -> None:
    cli.define_debug_flag(values)
    flags.DEFINE_string("name", None, "Dataset to build (or the first argument).",
                        flag_values=values)
    flags.DEFINE_string("source", None, "The dataset's local folder (its released layout, or "
                        "<split>/images and <split>/labels); omit to download.",
                        flag_values=values)
    flags.DEFINE_string("local_dir", None, "Same as --source.", flag_values=values)
    flags.DEFINE_string("data_dir", None, "tfds data_dir to write the dataset into "
                        "(default: $TFDS_DATA_DIR or ~/tensorflow_datasets).", flag_values=values)


def main(argv: Sequence[str] | None = None) -> int:
    argv = ["segjax.data.builders", *(sys.argv[1:] if argv is None else argv)]
    values = flags.FlagValues()
    values.set_gnu_getopt(True)
    define_flags(values)
    if any(arg in cli.HELP for arg in argv[1:]):
        print(f"{__doc__}\nflags:\n{values.get_help()}")
        return 0
    try:
        names = values(argv)[1:]
    except flags.Error as error:
        raise cli.UsageError(str(error)) from None
    if len(names) > 1 or (names and values.name and names[0] != values.name):
        raise cli.UsageError(f"name one dataset (got {names + [values.name or '']})")
    name = names[0] if names else values.name
    if name not in BUILDERS:
        raise cli.UsageError(f"dataset {name!r}: expected one of {', '.join(sorted(BUILDERS))}")
    source = values.source or values.local_dir
    data_dir = values.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    path = prepare(name, source, data_dir)
    print(f"prepared {name} in {path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
