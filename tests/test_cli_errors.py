"""Every entry point's errors through `segjax.cli.run`: one `error:` line naming the file,
key or value, status 2 for a usage error and 1 for a failure; --debug keeps the traceback."""

from __future__ import annotations

import pytest

from segjax import cli, evaluate, main as train_main, predict
from segjax.config import ConfigError
from segjax.data.builders import __main__ as builders_main
from segjax.pretrained import __main__ as pretrained_main

CONFIG = '''
from segjax.config import base_config


def get_config():
    return base_config()
'''


def _raising(error: BaseException):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize("error,code,line", [
    (cli.UsageError("give exactly one of --workdir or --checkpoint"), 2,
     "error: give exactly one of --workdir or --checkpoint"),
    (ConfigError("config.data.batch_size=0: expected a positive integer"), 2,
     "error: config.data.batch_size=0: expected a positive integer"),
    (FileNotFoundError("--input 'x/*.png': no image files found"), 1,
     "error: --input 'x/*.png': no image files found"),
    (KeyError("unknown preset 'nope'"), 1, "error: unknown preset 'nope'"),
])
def test_user_errors_are_one_line_with_their_status(error, code, line, capsys):
    assert cli.invoke(_raising(error), []) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_debug_keeps_the_traceback_and_bugs_are_not_hidden():
    with pytest.raises(FileNotFoundError):
        cli.invoke(_raising(FileNotFoundError("x")), ["--debug"])
    with pytest.raises(ZeroDivisionError):  # not a user's error: its traceback stays
        cli.invoke(_raising(ZeroDivisionError("division by zero")), [])


def test_interrupt_is_one_line_and_status_130(capsys):
    assert cli.invoke(_raising(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "config.py"
    path.write_text(CONFIG)
    return str(path)


@pytest.mark.parametrize("override,line", [
    ("--config.train.stpes=3", "error: --config.train.stpes: config.train has no field "
                               "'stpes'; did you mean config.train.steps?"),
    ("--config.data.batch_size=0", "error: config.data.batch_size=0: expected a positive "
                                   "integer"),
    ("--config.optim.learning_rate=inf", "error: config.optim.learning_rate=inf: expected a "
                                         "finite number >= 0"),
])
def test_training_command_line_names_the_bad_key_or_value(override, line, config_file, tmp_path,
                                                         capsys):
    workdir = tmp_path / "run"
    assert cli.invoke(train_main.main, ["--config", config_file, "--workdir", str(workdir),
                                        override]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == line
    assert not workdir.exists()


def test_inference_entry_points_name_the_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "no_run"
    assert cli.invoke(predict.main, ["--workdir", str(missing), "--input", str(tmp_path),
                                     "--output", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.splitlines() == [f"error: no checkpoint at {missing} "
                                                    "(expected a variables file, a workdir, a "
                                                    "checkpoints/ directory or one of its step "
                                                    "directories)"]
    assert cli.invoke(evaluate.main, ["--split", "val"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: give exactly one of --workdir or --checkpoint"]


def test_listing_and_builder_entry_points(capsys):
    assert cli.invoke(pretrained_main.main, ["no_such_preset"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_such_preset" in err[0]
    assert cli.invoke(builders_main.main, ["no_such_dataset"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: dataset 'no_such_dataset': expected one "
                                               "of ")


@pytest.mark.parametrize("module,argv,line", [
    (evaluate, ["--limit", "-1"], "error: flag --limit=-1: -1 is not a non-negative integer"),
    (evaluate, ["--limit=-1"], "error: flag --limit=-1: -1 is not a non-negative integer"),
    (predict, ["--alpha=2", "--input", "a", "--output", "b"],
     "error: flag --alpha=2: 2.0 is not a number in the range [0.0, 1.0]"),
])
def test_out_of_range_numbers_are_usage_errors_before_anything_is_read(module, argv, line,
                                                                      tmp_path, capsys):
    missing = tmp_path / "no_run"  # the flags are checked before the checkpoint is looked for
    assert cli.invoke(module.main, ["--workdir", str(missing), *argv]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
