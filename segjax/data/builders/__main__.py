"""Build a segjax tfds dataset: python -m segjax.data.builders --name NAME [--local_dir DIR]
--data_dir OUT."""

from absl import app, flags

from segjax.data.builders import BUILDERS, prepare

flags.DEFINE_enum("name", None, sorted(BUILDERS), "Dataset to build.")
flags.DEFINE_string("local_dir", None,
                    "Folder with <split>/images and <split>/labels; omit to download.")
flags.DEFINE_string("data_dir", None, "tfds data_dir to write the dataset into.")
flags.mark_flags_as_required(["name", "data_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    path = prepare(FLAGS.name, FLAGS.local_dir, FLAGS.data_dir)
    print(f"prepared {FLAGS.name} in {path}")


if __name__ == "__main__":
    app.run(main)
