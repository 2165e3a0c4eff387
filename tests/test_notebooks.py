"""The Colab notebooks (colab/*.ipynb): committed clean, laid out for Colab, run top to bottom.

Each notebook is executed by a Jupyter kernel of this interpreter (nbclient),
every cell in order, with papermill's convention for its budget: the cell
tagged "parameters" is followed by an injected cell that sets CI's values
(`CI_PARAMETERS`: seconds of training, tiny widths), and the data is the real
data under ../shared/data (SEGJAX_DATA, see conftest.py). A failing cell fails
the test naming the notebook, the cell's number and first line, and the
kernel's traceback. Set SEGJAX_NOTEBOOK_OUTPUTS=DIR to keep the executed
notebooks (with their plots) there.

Committed notebooks hold no outputs (`test_committed_notebooks_have_no_outputs`);
each opens with an "Open in Colab" badge pointing at itself in the repository
that setup.py names, installs segjax from one variable at the top
(SEGJAX_SOURCE: the repository or an uploaded wheel) and guards every
Colab-only call (`google.colab`, Drive, the TensorBoard magic) so that it runs
outside Colab.
"""

from __future__ import annotations

import json
import os
import re
import resource
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SHARED_DATA

COLAB = REPO_ROOT / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
CELL_TIMEOUT = 600

# CI's budget per notebook: the values that replace its parameters cell's (every name must be
# assigned there). Training runs of a few steps at tiny widths on small crops, encoders with one
# block per stage, XLA's native convolutions (segjax's CPU formulation runs faster steps but
# compiles for longer, and a CI run is all compilation); what each notebook shows is unchanged.
# 02 trains from scratch in CI (PRETRAINED=None): no network to download the preset.
SMALL_ENCODER = {"name": "resnet18", "stage_sizes": (1, 1, 1, 1)}   # one block per stage
CI_PARAMETERS = {
    "01_quickstart.ipynb": dict(STEPS=4, MAX_MINUTES=0.0, WIDTH=8, DEPTH=2, TILE=188,
                                VAL_SPLIT="train[25:26]", CONV_IMPL="native"),
    "02_your_own_data.ipynb": dict(VAL_SPLIT="val[:1]", ENCODER=SMALL_ENCODER, PRETRAINED=None,
                                   STEPS=3, MAX_MINUTES=0.0, CROP=64, BATCH_SIZE=2,
                                   CONV_IMPL="native"),
    "03_transformers.ipynb": dict(ENCODER={"name": "mit_b0", "depths": (1, 1, 1, 1)},
                                  STEPS=3, MAX_MINUTES=0.0, CROP=(64, 64), BATCH_SIZE=2,
                                  TRAIN_SPLIT="train[:4]", VAL_SPLIT="val[:1]",
                                  CONV_IMPL="native"),
    "04_panoptic.ipynb": dict(ENCODER=dict(SMALL_ENCODER, output_stride=16),
                              STEPS=3, MAX_MINUTES=0.0, CROP=64, BATCH_SIZE=2, WIDTH=16,
                              INSTANCE_WIDTH=8, HEAD_WIDTH=16, VAL_SPLIT="train[25:26]",
                              CONV_IMPL="native"),
    "05_volumes.ipynb": dict(SIZE=64, WIDTH=4, DEPTH=2, PATCH=(8, 32, 32), STEPS=3,
                             MAX_MINUTES=0.0, CONV_IMPL="native"),
    "06_new_paper_module.ipynb": dict(ENCODER=SMALL_ENCODER,
                                      STEPS=3, MAX_MINUTES=0.0, CROP=64, BATCH_SIZE=2,
                                      VAL_SPLIT="train[25:26]", CONV_IMPL="native"),
    "07_accelerators.ipynb": dict(STEPS=6, CHECKPOINT_EVERY=3, DISCONNECT_AT=4, WIDTH=8, CROP=64,
                                  BATCH_SIZE=4, VAL_SPLIT="train[25:26]", CONV_IMPL="native"),
}
# XLA:CPU options for the kernels: LLVM's cheap optimisation level. A CI run of a notebook is
# mostly compilation (a few steps of each program); this cut the kernels' CPU time by a quarter
# to a third (SegFormer 41 -> 28 s, Panoptic-DeepLab 48 -> 37 s) and changes no result.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# The datasets each notebook reads (a missing one skips it, as the data tests do).
DATASETS = {
    "01_quickstart.ipynb": ("isbi2012_em",),
    "02_your_own_data.ipynb": ("isbi2012_em",),
    "03_transformers.ipynb": ("camvid",),
    "04_panoptic.ipynb": ("isbi2012_em",),
    "05_volumes.ipynb": ("isbi2012_em",),
    "06_new_paper_module.ipynb": ("isbi2012_em",),
    "07_accelerators.ipynb": ("isbi2012_em",),
}


def _setup_repository() -> str:
    """setup.py's REPOSITORY URL (the repository the badges and install cells point at)."""
    match = re.search(r'^REPOSITORY = "([^"]+)"', (REPO_ROOT / "setup.py").read_text(), re.M)
    assert match, "setup.py defines no REPOSITORY"
    return match.group(1)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _parameters_index(notebook: dict, name: str) -> int:
    tagged = [index for index, cell in enumerate(notebook["cells"])
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def _ids(paths):
    return [path.name for path in paths]


def test_every_notebook_has_a_ci_budget_and_the_issue_lists_seven():
    names = [path.name for path in NOTEBOOKS]
    assert len(names) == 7, names
    assert sorted(CI_PARAMETERS) == names and sorted(DATASETS) == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebooks_have_no_outputs(path):
    notebook = _read(path)
    dirty = [index for index, cell in enumerate(notebook["cells"])
             if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear them "
                       "before committing (Edit > Clear all outputs, or nbstripout)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_layout_badge_install_parameters_and_colab_guards(path):
    notebook = _read(path)
    cells = notebook["cells"]
    repository = _setup_repository()
    github = repository.removeprefix("https://github.com/")
    badge = (f"(https://colab.research.google.com/github/{github}/blob/main/colab/{path.name})")
    assert cells[0]["cell_type"] == "markdown" and badge in _source(cells[0]), \
        f"{path.name}: the first cell needs the Open in Colab badge linking to {badge}"
    first_code = next(_source(cell) for cell in cells if cell["cell_type"] == "code")
    assert re.search(rf'^SEGJAX_SOURCE = "git\+{re.escape(repository)}"$', first_code, re.M), \
        f"{path.name}: the first code cell must set SEGJAX_SOURCE to git+{repository}"
    index = _parameters_index(notebook, path.name)
    assigned = set(re.findall(r"^([A-Z_][A-Z0-9_]*(?:, *[A-Z_][A-Z0-9_]*)*) *=",
                              _source(cells[index]), re.M))
    assigned = {name.strip() for group in assigned for name in group.split(",")}
    missing = set(CI_PARAMETERS[path.name]) - assigned
    assert not missing, f"{path.name}: CI sets {sorted(missing)}, which its parameters cell lacks"
    for number, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        for line in _source(cell).splitlines():
            if "google.colab" in line and "find_spec" not in line:
                assert line.startswith((" ", "\t")), (
                    f"{path.name}: cell {number} uses google.colab outside a guarded block: "
                    f"{line.strip()!r}")
            assert not line.lstrip().startswith(("!", "%")), (
                f"{path.name}: cell {number} has a shell or magic line {line.strip()!r}; use "
                "subprocess / get_ipython() under a guard so the cell runs anywhere")


def _injected_source(parameters: dict) -> str:
    lines = ["# Parameters injected by tests/test_notebooks.py (CI's budget)"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines)


def _failed_cell(notebook, injected_at: int) -> str:
    """'cell N (`first line`)' of the first cell with an error output, numbered as committed."""
    for index, cell in enumerate(notebook.cells):
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            number = index if index < injected_at else index - 1
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            where = "the injected parameters" if index == injected_at else f"cell {number}"
            return f"{where} (`{first.strip()[:80]}`)"
    return "a cell"


@pytest.fixture(scope="session")
def notebook_compile_cache(tmp_path_factory) -> Path:
    """One persistent XLA compilation cache for the notebooks of a session."""
    return tmp_path_factory.mktemp("notebook-xla-cache")


class NotebookFailed(AssertionError):
    """A cell raised; the message names the notebook, the cell and the kernel's traceback."""


def execute(path: Path, parameters: dict, workdir: Path, env: dict):
    """Runs the notebook at `path` in `workdir`, `parameters` injected after its parameters
    cell; returns the executed notebook or raises NotebookFailed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    index = _parameters_index(notebook, path.name) + 1
    injected = nbformat.v4.new_code_cell(_injected_source(parameters))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index, injected)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        traceback = re.sub(r"\x1b\[[0-9;]*m", "", str(error))   # the kernel's colours
        raise NotebookFailed(f"{path.name}: {_failed_cell(notebook, index)} failed:\n"
                             f"{traceback}") from None
    finally:
        keep = os.environ.get("SEGJAX_NOTEBOOK_OUTPUTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, Path(keep) / path.name)
    return notebook


def test_a_failing_cell_fails_naming_the_notebook_and_the_cell(tmp_path):
    import nbformat
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# broken"),
                      nbformat.v4.new_code_cell("X = 1"),
                      nbformat.v4.new_code_cell("y = X + 1"),
                      nbformat.v4.new_code_cell("assert y == 2, f'y is {y}'")]
    notebook.cells[1].metadata["tags"] = ["parameters"]
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)
    executed = execute(path, {"X": 1}, tmp_path, dict(os.environ))
    assert executed.cells[2].source.endswith("X = 1")           # the injected cell
    with pytest.raises(NotebookFailed) as failure:
        execute(path, {"X": 2}, tmp_path, dict(os.environ))
    message = str(failure.value)
    assert message.startswith("broken.ipynb: cell 3 (`assert y == 2, f'y is {y}'`) failed:")
    assert "AssertionError: y is 3" in message


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(path, tmp_path, notebook_compile_cache):
    for dataset in DATASETS[path.name]:
        if not (SHARED_DATA / dataset).is_dir():
            pytest.skip(f"{path.name} reads {dataset}, not found at {SHARED_DATA / dataset}")
    env = dict(os.environ, SEGJAX_DATA=str(SHARED_DATA),
               JAX_COMPILATION_CACHE_DIR=str(notebook_compile_cache),
               SEGJAX_CACHE=str(tmp_path / "segjax-cache"),
               XLA_FLAGS=" ".join(filter(None, (os.environ.get("XLA_FLAGS"), FAST_COMPILE))))
    start, children = time.perf_counter(), _children_cpu_seconds()
    try:
        execute(path, CI_PARAMETERS[path.name], tmp_path, env)
    except NotebookFailed as error:
        pytest.fail(str(error), pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s, the kernel's CPU time "
          f"{_children_cpu_seconds() - children:.1f} s")


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (the kernels)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
