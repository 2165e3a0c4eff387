"""Every benchmark and experiment script under experiments/ builds its command line.

The scripts are run by hand (they are too long for the suite), so an API they
call moving elsewhere would otherwise go unnoticed until someone runs them:
`main(["--help"])` imports the script and builds its parser, which is where
they reach into segjax's command-line helpers.
"""

import importlib
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
# Scripts are the files run as programs; the others are modules they import.
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py")
                 if 'if __name__ == "__main__":' in p.read_text())


def test_the_scripts_are_found():
    assert {"bench_conv", "isbi_recipes", "unetpp_pruning"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_builds_its_command_line(name, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
