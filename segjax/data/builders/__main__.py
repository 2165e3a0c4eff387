"""Build a segjax tfds dataset from a local folder (or, where public, by downloading it):

    python -m segjax.data.builders NAME --source DIR [--data_dir OUT]
    python -m segjax.data.builders --name NAME [--local_dir DIR] --data_dir OUT   (same)

OUT defaults to $TFDS_DATA_DIR or ~/tensorflow_datasets, where the "tfds" source
(data.source='tfds', data.tfds_name=NAME, data.root=OUT) reads it.
"""

import os

from absl import app, flags

from segjax.data.builders import BUILDERS, prepare

flags.DEFINE_enum("name", None, sorted(BUILDERS), "Dataset to build (or the first argument).")
flags.DEFINE_string("source", None, "The dataset's local folder (its released layout, or "
                                    "<split>/images and <split>/labels); omit to download.")
flags.DEFINE_string("local_dir", None, "Same as --source.")
flags.DEFINE_string("data_dir", None, "tfds data_dir to write the dataset into "
                                      "(default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
FLAGS = flags.FLAGS


def main(argv):
    names = argv[1:]
    if len(names) > 1 or (names and FLAGS.name and names[0] != FLAGS.name):
        raise app.UsageError(f"name one dataset (got {names + [FLAGS.name or '']})")
    name = names[0] if names else FLAGS.name
    if name not in BUILDERS:
        raise app.UsageError(f"dataset {name!r}: expected one of {', '.join(sorted(BUILDERS))}")
    source = FLAGS.source or FLAGS.local_dir
    data_dir = FLAGS.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    path = prepare(name, source, data_dir)
    print(f"prepared {name} in {path}")


if __name__ == "__main__":
    app.run(main)
