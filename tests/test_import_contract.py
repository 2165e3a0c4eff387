"""The import contract: segjax's layers import downward only, and the import graph has no circle.

Every module of the package belongs to one layer of `LAYERS` (the longest
matching prefix decides); a module may import modules of its own layer and
of the layers before it. Function-local imports count like module-level ones:
a local import that only hides a circle is still an edge. docs/design.md
explains the order.

    python tests/test_import_contract.py [REPO_ROOT]

prints the graph's figures (modules, edges, circles, upward edges) for a
checkout, e.g. an older commit's.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import from its own layer and every layer above it in this list.
LAYERS = (
    ("foundation", ("segjax", "segjax.registry", "segjax.host_memory", "segjax.paths")),
    ("ops: pure array functions", ("segjax.ops",)),
    ("config schema", ("segjax.config",)),
    ("runtime and array-level library", ("segjax.runtime", "segjax.sharding", "segjax.losses",
                                         "segjax.metrics", "segjax.boundary_metrics",
                                         "segjax.optim", "segjax.panoptic",
                                         "segjax.visualize", "segjax.plots")),
    ("models", ("segjax.models",)),
    ("checkpoints and conversion", ("segjax.checkpoints", "segjax.convert")),
    ("data", ("segjax.data",)),
    ("evaluation and inference", ("segjax.inference", "segjax.evaluation", "segjax.deployed")),
    ("pretrained weights", ("segjax.pretrained",)),
    ("train", ("segjax.train",)),
    ("entry points", ("segjax.main", "segjax.predict", "segjax.evaluate", "segjax.export",
                      "segjax.cli", "segjax.convert.__main__", "segjax.models.__main__",
                      "segjax.data.builders.__main__", "segjax.pretrained.__main__")),
)


class Edge(NamedTuple):
    source: str        # importing module
    path: Path         # its file
    line: int
    target: str        # imported segjax module


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules(root: Path) -> dict[str, Path]:
    """{dotted name: file} of every module of the segjax package under `root`."""
    return {module_name(path, root): path for path in sorted((root / "segjax").rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an import names: the longest prefix of `name` that is a module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """Every segjax module `module` imports, at module level or inside functions."""
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "segjax" or name.startswith("segjax."):
                target = _resolve(name, modules)
                if target is not None and target != module:
                    edges.append(Edge(module, path, node.lineno, target))
    return edges


def import_graph(root: Path = REPO_ROOT) -> list[Edge]:
    modules = package_modules(root)
    return [edge for module, path in modules.items()
            for edge in imports_of(module, path, modules)]


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest prefix that names `module` or a package above it (the
    package itself, "segjax", names only its own __init__)."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != "segjax"
            if (module == prefix or inside) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def upward_edges(edges: list[Edge]) -> list[Edge]:
    return [edge for edge in edges
            if layer_of(edge.target) is not None and layer_of(edge.source) is not None
            and layer_of(edge.target) > layer_of(edge.source)]


def circles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def describe(edge: Edge, root: Path = REPO_ROOT) -> str:
    source_layer, target_layer = LAYERS[layer_of(edge.source)][0], LAYERS[layer_of(edge.target)][0]
    return (f"{edge.path.relative_to(root)}:{edge.line} imports {edge.target} "
            f"({source_layer!r} may not import {target_layer!r})")


def test_every_module_has_a_layer():
    unplaced = [name for name in package_modules(REPO_ROOT) if layer_of(name) is None]
    assert not unplaced, f"modules in no layer of LAYERS (add them): {unplaced}"


def test_layers_import_downward_only():
    upward = upward_edges(import_graph())
    assert not upward, "upward imports:\n" + "\n".join(describe(edge) for edge in upward)


def test_import_graph_has_no_circles():
    found = circles(import_graph())
    assert not found, f"import circles: {found}"


def test_only_the_training_entry_point_imports_segjax_train():
    """Inference, evaluation, export and conversion must work without the training package
    (the entry points' layer could import it; only segjax.main does)."""
    offenders = sorted({str(edge.path.relative_to(REPO_ROOT)) for edge in import_graph()
                        if layer_of(edge.target) == layer_of("segjax.train")
                        and layer_of(edge.source) != layer_of("segjax.train")
                        and edge.source != "segjax.main"})
    assert not offenders, f"modules outside segjax/train importing segjax.train: {offenders}"


def test_contract_names_the_offending_import(tmp_path):
    """A model importing the data layer is reported with its file, line and target."""
    package = tmp_path / "segjax"
    (package / "models").mkdir(parents=True)
    (package / "data").mkdir()
    for init in (package, package / "models", package / "data"):
        (init / "__init__.py").write_text("")
    (package / "data" / "sources.py").write_text("from segjax.models import unet\n")
    (package / "models" / "unet.py").write_text('"""A model."""\n\n'
                                                 "from segjax.data import sources\n")
    edges = import_graph(tmp_path)
    upward = upward_edges(edges)
    assert [describe(edge, tmp_path) for edge in upward] == [
        "segjax/models/unet.py:3 imports segjax.data.sources ('models' may not import 'data')"]
    assert circles(edges) == [["segjax.data.sources", "segjax.models.unet"]]


def _imports_private_jax(node) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").startswith("jax._src")
    return isinstance(node, ast.Import) and any(alias.name.startswith("jax._src")
                                                for alias in node.names)


def test_no_module_imports_jax_private_internals():
    offenders = [f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                 for path in sorted((REPO_ROOT / "segjax").rglob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text())) if _imports_private_jax(node)]
    assert not offenders, f"imports from jax._src: {offenders}"


def report(root: Path) -> str:
    edges = import_graph(root)
    modules = package_modules(root)
    unplaced = [name for name in modules if layer_of(name) is None]
    upward = upward_edges(edges)
    lines = [f"{root}: {len(modules)} modules, {len(set((e.source, e.target) for e in edges))} "
             f"edges, {len(circles(edges))} circles, {len(upward)} upward imports"]
    lines += [f"  circle: {' <-> '.join(circle)}" for circle in circles(edges)]
    lines += [f"  upward: {describe(edge, root)}" for edge in upward]
    lines += [f"  no layer: {name}" for name in unplaced]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO_ROOT))
