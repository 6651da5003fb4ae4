"""Layered recipes: ``--config base.yaml --config mine.yaml``, where ``mine.yaml`` holds only what
changes, also inside a registry component.

LightningCLI applies the files in order and merges them key by key, ``class_path`` / ``init_args``
included; a registry component (``dropout: {name: dropout, p: 0.5}``) is one value to jsonargparse,
so a later file's ``dropout: {p: 0.3}`` would replace it with a component without a name. regkit
completes such a partial component from the earlier files (their YAML merged in order: mappings key
by key, a component with another ``name`` or ``class_path`` replacing the old one, lists and values
replacing) and gives the completed component as one argument right after the file that changed it,
so that everything after it on the command line still overrides it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regkit.cli.commands import option_values
from regkit.cli.recipe_files import load_yaml

_CHOOSES = ("name", "class_path")


def _replaces(base: Any, new: Any) -> bool:
    """A mapping naming another component (or class) than ``base`` replaces it instead of merging."""
    return any(k in new and (not isinstance(base, dict) or base.get(k) != new[k]) for k in _CHOOSES)


def merged(base: Any, new: Any) -> Any:
    """``new`` over ``base``: mappings merge key by key unless ``new`` names another component."""
    if not isinstance(base, dict) or not isinstance(new, dict) or _replaces(base, new):
        return new
    out = dict(base)
    for key, value in new.items():
        out[key] = merged(base.get(key), value) if key in base else value
    return out


def _is_component(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and "name" in value and "class_path" not in value)


def partial_components(base: Any, delta: Any, key: str = "") -> list[tuple[str, dict[str, Any]]]:
    """``(dotted key, completed component)`` for each mapping in ``delta`` that changes arguments of a
    registry component of ``base`` without naming it."""
    found: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(delta, dict) or not isinstance(base, dict):
        return found
    for name, value in delta.items():
        inner = f"{key}.{name}" if key else str(name)
        if not isinstance(value, dict) or name not in base or any(k in value for k in _CHOOSES):
            continue
        if key and _is_component(base[name]):  # a component, below the top-level sections
            old = {"name": base[name]} if isinstance(base[name], str) else base[name]
            found.append((inner, merged(old, value)))
        else:
            found += partial_components(base[name], value, inner)
    return found


def complete_components(args: list[str]) -> list[str]:
    """``args`` with, after each ``--config`` file but the first, the components it changes partly,
    completed from the files before it (``--model.init_args.network={...}``)."""
    files = option_values(args, "--config")
    if len(files) < 2:
        return args
    recipes: dict[str, Any] = {}
    for path in files:
        if Path(path).is_file():
            value = load_yaml(Path(path).read_text(encoding="utf-8"))
            recipes[path] = value if isinstance(value, dict) else {}
    out: list[str] = []
    base: Any = None  # the files before this one, merged
    for i, arg in enumerate(args):
        out.append(arg)
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif i > 0 and args[i - 1] == "--config":
            path = arg
        else:
            continue
        delta = recipes.get(path, {})
        if base is not None:
            out += [f"--{key}={json.dumps(value)}" for key, value in partial_components(base, delta)]
        base = merged(base or {}, delta)
    return out
