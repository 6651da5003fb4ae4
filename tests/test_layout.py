"""The package layout is the architecture: every module belongs to one layer, imports point down
(or sideways inside a layer) and never form a circle. A new upward arrow or circle fails here,
naming the files. The layers MC dropout and attention use register components but look nothing up."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "regkit"

# Bottom to top. A module imports only from its own layer and the layers below it.
LAYERS = [
    "regkit.errors",      # the errors every layer raises, and the argument check
    "regkit.registry",    # kinds, specs, plugin discovery, `regkit list`
    "regkit.data",        # data modules (offline data sets)
    "regkit.components",  # what a recipe or rule places in a model
    "regkit.networks",    # networks assembled from components through slots
    "regkit.gan",         # GAN generators, discriminators, losses, penalties, metrics
    "regkit.rules",       # rules that place components inside any built model
    "regkit.loggers",     # W&B and CSV loggers a recipe names
    "regkit.callbacks",   # Lightning callbacks
    "regkit.tasks",       # LightningModules
    "regkit.cli",         # the `regkit` command: fit/validate/test/predict through LightningCLI
    "regkit.compare",     # `regkit compare`: many `regkit fit` runs
]
# Entry points sit on top of everything and only entry points import them: the public facade
# (regkit/__init__.py), the `regkit` command's main (which dispatches to every subcommand, compare
# included; regkit/cli/__init__.py re-exports it) and the `python -m` scripts.
ENTRY_POINTS = ("regkit", "regkit.__main__", "regkit.cli", "regkit.cli.main", "regkit.cli.__main__", "regkit.gan.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(path: Path) -> set[str]:
    """The regkit modules a file imports, at the top or inside functions (not under TYPE_CHECKING);
    ``from regkit.x import y`` counts as ``regkit.x.y`` when that is a module."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name == "regkit" or name.startswith("regkit.")}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name == layer or name.startswith(layer + "."):
            return i
    raise AssertionError(f"{name} belongs to no layer: add its package to LAYERS in tests/test_layout.py")


def test_every_top_level_module_is_a_package_or_the_facade():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py", "errors.py"))
    assert not loose, f"top-level modules outside a package: {loose}"


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for name, deps in graph.items():
        if name in ENTRY_POINTS:
            continue
        for dep in deps:
            if dep in ENTRY_POINTS:
                found.append(f"{name} imports the entry point {dep}")
            elif layer_of(dep) > layer_of(name):
                found.append(f"{name} ({LAYERS[layer_of(name)]}) imports {dep} ({LAYERS[layer_of(dep)]})")
    return sorted(found)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module: each is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_every_module_belongs_to_a_layer_and_imports_only_downward():
    arrows = upward_arrows(GRAPH)
    assert not arrows, "\n".join(arrows)


def test_the_import_graph_has_no_circle():
    found = circles(GRAPH)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_checks_find_an_upward_arrow_and_a_circle():
    made_up = {"regkit.components.norm": {"regkit.cli.lightning", "regkit.errors"}, "regkit.cli.lightning": set(),
               "regkit.errors": set()}
    assert upward_arrows(made_up) == ["regkit.components.norm (regkit.components) imports regkit.cli.lightning (regkit.cli)"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "regkit.registry.core" in imports(MODULES["regkit.registry.plugins"])  # from-imports resolve to modules


def test_layers_do_not_query_the_registry_at_run_time():
    # Registration at definition (`from regkit.registry import register`) and spec types as slot
    # annotations are fine; no lookup (get, build, entries) is imported by the layers MC dropout and
    # attention use.
    for rel in ("components/regularizers/base.py", "components/mc_dropout.py", "components/attention.py"):
        for node in ast.walk(ast.parse((PACKAGE / rel).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "regkit.registry":
                assert all(a.name == "register" or a.name.endswith("Spec") for a in node.names), rel
            elif isinstance(node, ast.ImportFrom) and node.module == "regkit":
                assert "registry" not in [a.name for a in node.names], rel
            elif isinstance(node, ast.Import):
                assert "regkit.registry" not in [a.name for a in node.names], rel
