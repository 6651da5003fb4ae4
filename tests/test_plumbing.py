"""Plumbing that survives upgrades: only public APIs of dependencies, layers that import downward,
one registry object per kind, plugin autoload that can be turned off."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch

import regkit

from conftest import ROOT

PACKAGE = ROOT / "regkit"
# Packages whose private names regkit must not use; for a plugin, regkit is one of them.
DEPENDENCIES = {"torch", "lightning", "lightning_fabric", "lightning_utilities", "pytorch_lightning", "jsonargparse",
                "torchmetrics", "wandb", "numpy"}
# Public attributes that lead into Lightning's loops, private classes since Lightning 2.0 (_FitLoop,
# _TrainingEpochLoop, their progress trackers): trainer.fit_loop.epoch_loop.batch_progress...
LIGHTNING_LOOPS = {"fit_loop", "validate_loop", "test_loop", "predict_loop", "epoch_loop"}
# The one documented exception (docs/wandb.md, "Why regkit touches one private attribute").
ALLOWED = {("regkit/loggers/wandb.py", "init_args: dict[str, Any] = self._wandb_init")}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def defined_names(sources: list[str]) -> set[str]:
    """Every private name the sources define: functions, classes, assigned names and attributes
    (``self._x = ...``), import aliases, and names given as strings to setattr / register_buffer."""
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
                names.add(node.id if isinstance(node, ast.Name) else node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
            elif isinstance(node, ast.Call) and node.args:
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                name = _string(node.args[1] if func == "setattr" and len(node.args) > 1 else node.args[0])
                if func in ("setattr", "register_buffer", "register_parameter", "register_module") and name:
                    names.add(name)
    return {n for n in names if _private(n)}


def private_uses(source: str, own: set[str], dependencies: set[str] = DEPENDENCIES) -> list[tuple[int, str]]:
    """(line, code) of every use of a private name that is not one of ``own``: private modules and
    names imported from a dependency or across modules (``from regkit.data.idx import _DTYPES``),
    private attributes of a dependency (``torch._foreach_lerp_``, ``nn.modules.batchnorm._BatchNorm``)
    and of objects it made (``self._trainer``, ``trainer.fit_loop.epoch_loop._batches_that_stepped``),
    private keys read by name (``loop["_batches_that_stepped"]``, ``getattr(x, "_name")``), and the
    way into Lightning's private loop objects (``trainer.fit_loop``)."""
    tree = ast.parse(source)
    modules = {}  # local name -> package, for names an import of a dependency binds
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(part) for part in alias.name.split(".")):
                    found.append((node.lineno, f"import {alias.name}"))
                modules[alias.asname or alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            for alias in node.names:
                if any(_private(part) for part in parts) or _private(alias.name):  # another module's private
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
                if parts[0] in dependencies:
                    modules[alias.asname or alias.name] = parts[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in LIGHTNING_LOOPS:
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
                root = root.value if not isinstance(root, ast.Call) else root.func
            from_dependency = isinstance(root, ast.Name) and modules.get(root.id) in dependencies
            if from_dependency or node.attr not in own:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Subscript) and _private(_string(node.slice) or "") and _string(node.slice) not in own:
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) > 1
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr")):
            name = _string(node.args[1])
            if name and _private(name) and name not in own:
                found.append((node.lineno, ast.unparse(node)))
    return sorted(set(found))


def _packages() -> list[tuple[list[Path], set[str]]]:
    """regkit's sources, and each plugin package's (for which regkit is a dependency like any other)."""
    packages = [(sorted(PACKAGE.rglob("*.py")), DEPENDENCIES)]
    for plugin in sorted((ROOT / "plugins").glob("*/pyproject.toml")):
        files = [f for f in sorted(plugin.parent.rglob("*.py")) if "tests" not in f.relative_to(plugin.parent).parts]
        packages.append((files, DEPENDENCIES | {"regkit"}))
    return packages


def test_no_private_api_of_a_dependency():
    found = []
    for files, dependencies in _packages():
        sources = {f: f.read_text() for f in files}
        own = defined_names(list(sources.values()))
        for path, source in sources.items():
            rel = path.relative_to(ROOT).as_posix()
            lines = source.splitlines()
            for number, code in private_uses(source, own, dependencies):
                if (rel, lines[number - 1].strip()) not in ALLOWED:
                    found.append(f"{rel}:{number}: {code}")
    assert not found, "\n".join(found)


PRIVATE_USES = [  # each must be caught
    "import torch\ntorch._foreach_lerp_(a, b, 0.5)",
    "from torch import nn\nclass B(nn.modules.batchnorm._BatchNorm): pass",
    "import torch\nclass B(torch.nn.BatchNorm1d):\n    def f(self, x): self._check_input_dim(x)",
    "import torch\ntorch._utils._flatten_dense_tensors(ts)",
    "class W(WandbLogger):\n    def __init__(self): self._wandb_init.pop('anonymous')",
    "def f(task): return task._trainer",
    "def f(trainer): return trainer.fit_loop.epoch_loop._batches_that_stepped",
    "def f(checkpoint): return checkpoint['loops']['fit_loop']['_batches_that_stepped']",
    "def f(trainer): return getattr(trainer, '_logger_connector', None)",
    "from lightning.fabric.loggers.csv_logs import _ExperimentWriter",
    "from lightning.pytorch.utilities._pytree import tree_flatten",
    "import torch._dynamo",
    "from jsonargparse._typehints import ActionTypeHint",
    "import jsonargparse\njsonargparse._common.parser_context",
    "def f(parser): return parser._option_string_actions",
    "def f(trainer): return trainer.fit_loop.epoch_loop.batch_progress.total.ready",
    "from regkit.data.idx import _DTYPES",
    "import regkit\nregkit.registry._entries",
]


def private_overrides(classes: list[type]) -> list[str]:
    """``Class.name`` for every private method or attribute a class redefines from a dependency's
    base class (an override of ``_check_input_dim`` relies on torch's internals as much as a call)."""
    found = []
    for cls in classes:
        for name in vars(cls):
            if _private(name) and name != "_abc_impl":  # _abc_impl: set by ABCMeta on every subclass
                if any(base.__module__.split(".")[0] in DEPENDENCIES and name in vars(base) for base in cls.__mro__[1:]):
                    found.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    return found


def test_no_private_method_of_a_dependency_is_overridden():
    modules = [importlib.import_module(info.name) for info in pkgutil.walk_packages(regkit.__path__, "regkit.")
               if not info.name.endswith("__main__")]
    classes = [c for m in modules for c in vars(m).values() if inspect.isclass(c) and c.__module__ == m.__name__]
    assert len(classes) > 50
    assert private_overrides(classes) == []


def test_the_override_check_catches_a_private_override():
    class Norm(torch.nn.BatchNorm1d):
        def _check_input_dim(self, x: torch.Tensor) -> None:
            pass

    class Fine(torch.nn.BatchNorm1d):
        def _own_helper(self) -> None:
            pass

    assert private_overrides([Norm, Fine]) == [f"{__name__}.{Norm.__qualname__}._check_input_dim"]


@pytest.mark.parametrize("source", PRIVATE_USES)
def test_the_private_api_check_catches(source):
    assert private_uses(source, own=set(), dependencies=DEPENDENCIES | {"regkit"}), source


def test_the_private_api_check_lets_own_names_and_strings_be():
    source = ("import re\nclass A:\n    def __init__(self): self._count = 0\n"
              "    def _step(self): self._count += 1; return self.__class__.__name__\n"
              "PATTERN = re.compile(r'lightning\\.pytorch\\.utilities\\._pytree')  # a warning's module, a string\n")
    assert private_uses(source, own=defined_names([source])) == []


