"""Packaging: compatible ranges in install_requires, the exact versions in constraints.txt, and
a built wheel that installs into a clean venv through a notebook's install cell.

The wheel test builds segjax (`python -m build --wheel`, from a copy of the files a release
holds), creates a venv without segjax, runs the Colab quickstart's install cell there with
SEGJAX_SOURCE set to the wheel (the "uploaded wheel" path of every notebook; pip resolves the
dependencies from the package index at constraints.txt's versions), and runs
`python -m segjax.models` in that venv, away from the checkout.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

JAX_STACK = ("jax", "flax", "optax", "orbax-checkpoint", "grain")


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _install_requires() -> list[Requirement]:
    return [Requirement(line) for line in _requirement_lines(REPO_ROOT / "requirements.txt")]


def _constraints(path: Path = REPO_ROOT / "constraints.txt") -> dict[str, str]:
    pins = {}
    for line in _requirement_lines(path):
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {line!r} is not an exact pin"
        pins[_normal(requirement.name)] = specifier.version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_install_requires_uses_ranges_never_exact_pins():
    pinned = [str(r) for r in _install_requires()
              if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, (f"requirements.txt (install_requires) pins {pinned}: use a range "
                        "(>= the tested version) and put the exact version in constraints.txt")


def test_the_jax_stack_lower_bounds_are_the_versions_ci_pins():
    constraints = _constraints()
    bounds = {_normal(r.name): {s.operator: s.version for s in r.specifier}
              for r in _install_requires()}
    for name in JAX_STACK:
        assert bounds[name].get(">=") == constraints[name], (
            f"{name}: install_requires says {bounds[name]}, constraints.txt tests "
            f"{constraints[name]}; the lower bound is the version CI tests")


def test_constraints_pin_every_requirement():
    constraints = _constraints()
    missing = [r.name for r in _install_requires() if _normal(r.name) not in constraints]
    assert not missing, f"constraints.txt has no exact version of {missing}"
    for requirement in _install_requires():
        assert requirement.specifier.contains(constraints[_normal(requirement.name)]), (
            f"constraints.txt pins {requirement.name}=={constraints[_normal(requirement.name)]}, "
            f"outside install_requires' {requirement}")


def _export_requirements() -> list[Requirement]:
    """setup.py's EXPORT_REQUIREMENTS (the `export` extra), read without running setup()."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    (value,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", "") == "EXPORT_REQUIREMENTS" for t in node.targets)]
    return [Requirement(line) for line in ast.literal_eval(value)]


def test_the_export_extra_lower_bounds_are_the_versions_test_export_pins():
    """make test-export installs constraints-export.txt's versions on top of constraints.txt's:
    every export requirement (on Linux, where CI runs) is pinned there at its lower bound, and
    no pin of constraints.txt is pinned again differently."""
    export_pins = _constraints(REPO_ROOT / "constraints-export.txt")
    base = _constraints()
    for requirement in _export_requirements():
        if requirement.marker and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = _normal(requirement.name)
        bounds = {s.operator: s.version for s in requirement.specifier}
        assert bounds.get(">=") == export_pins.get(name), (
            f"{name}: the export extra says {bounds}, constraints-export.txt tests "
            f"{export_pins.get(name)}; the lower bound is the version CI tests")
    twice = {name: (base[name], pin) for name, pin in export_pins.items()
             if name in base and base[name] != pin}
    assert not twice, f"constraints-export.txt changes pins of constraints.txt: {twice}"


RELEASE_FILES = ("setup.py", "pyproject.toml", "requirements.txt", "README.md", "segjax")


def _install_cell() -> str:
    notebook = json.loads((REPO_ROOT / "colab" / "01_quickstart.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    return "".join(cell["source"])


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (f"{' '.join(map(str, command))} failed:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def test_built_wheel_installs_into_a_clean_venv_and_lists_the_models(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in RELEASE_FILES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        copy(REPO_ROOT / name, source / name,
             **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree
                else {}))
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"),
          str(source)], timeout=600)
    (wheel,) = (tmp_path / "dist").glob("segjax-*.whl")

    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_CONSTRAINT"] = " ".join(filter(None, (env.get("PIP_CONSTRAINT"),
                                                   str(REPO_ROOT / "constraints.txt"))))
    cell = _install_cell()
    cell, count = re.subn(r'^SEGJAX_SOURCE = .*$', f"SEGJAX_SOURCE = {str(wheel)!r}", cell,
                          flags=re.M)
    assert count == 1
    missing = _run([str(python), "-c", "import importlib.util as u; "
                    "print(u.find_spec('segjax') is None)"], cwd=tmp_path, env=env)
    assert missing.stdout.strip() == "True"
    _run([str(python), "-c", cell], cwd=tmp_path, env=env, timeout=900)

    listing = _run([str(python), "-m", "segjax.models"], cwd=tmp_path, env=env, timeout=600)
    where = _run([str(python), "-c", "import segjax; print(segjax.__file__)"], cwd=tmp_path,
                 env=env)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout
    lines = listing.stdout.splitlines()
    unet = next(line for line in lines if line.split()[0] == "unet")
    assert "31,030,658" in unet and "1505.04597" in unet
    assert len(lines) >= 40, listing.stdout
    print(f"{wheel.name}: python -m segjax.models listed {len(lines)} models, e.g.\n{unet}")
