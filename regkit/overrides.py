"""Command-line overrides inside a component, merged into the recipe's value of that component.

``--model.init_args.network.dropout.p 0.3`` sets one argument of the network's dropout and keeps
the rest; ``...network.dropout gaussian_dropout`` replaces the component; ``...network.dropout
null`` switches the slot off. jsonargparse hands a registered type such an override without the
component's previous value, so regkit merges it first, through the parser's public API only:

1. parse the command line without these overrides, which gives each component's recipe value;
2. merge each override into its component's value, in command-line order;
3. give the merged component as one argument (``--model.init_args.network={...}``) in place of
   its overrides, for the real parse.
"""
from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Optional

import yaml

from regkit.spec import InvalidSpec, Spec, to_config



def _dotted_options(args: list[str]) -> list[tuple[int, int, str, str]]:
    """``(start, end, key, raw value)`` of every ``--a.b.c value`` / ``--a.b.c=value`` that may reach
    inside a component: three or more keys, not counting ``init_args``."""
    found = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "." in arg:
            key, eq, value = arg[2:].partition("=")
            end = i + 1
            if not eq:
                if i + 1 >= len(args):
                    break
                value, end = args[i + 1], i + 2
            if len([k for k in key.split(".") if k != "init_args"]) >= 3 and not key.endswith("+"):
                found.append((i, end, key, value))
            i = end
            continue
        i += 1
    return found


def _quiet_parse(parser: Any, args: list[str]) -> Optional[Any]:
    """Parse without printing or exiting; None when the command line does not parse."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(args)
        except (SystemExit, Exception):
            return None


def _component_at(root: Any, keys: list[str]) -> Optional[tuple[str, int]]:
    """Walk ``keys`` through the parsed config; where they enter a component, return its dotted key
    and how many of ``keys`` lead to it (``init_args`` may be left out, as jsonargparse allows)."""
    node, path = root, list[str]()
    for used, key in enumerate(keys):
        if isinstance(node, (Spec, InvalidSpec)):
            return ".".join(path), used
        if not hasattr(node, "get"):
            return None
        if key in node:
            node, path = node[key], path + [key]
        elif "init_args" in node and hasattr(node["init_args"], "get") and key in node["init_args"]:
            node, path = node["init_args"][key], path + ["init_args", key]
        else:
            return None
    return None  # the keys end at (or before) a component: jsonargparse handles that itself


def _as_mapping(value: Any) -> dict[str, Any]:
    """A component's recipe form as a fresh dict: from a spec, a bare name, a mapping, or nothing."""
    value = to_config(value)
    if isinstance(value, str):
        return {"name": value}
    return dict(value) if isinstance(value, dict) else {}


def merge(previous: Any, key: str, value: Any) -> dict[str, Any]:
    """``previous`` (a component's value) with ``key`` (dotted, inside it) set to ``value``."""
    base = _as_mapping(previous)
    target = base
    keys = key.split(".")
    for k in keys[:-1]:
        target[k] = _as_mapping(target.get(k))
        target = target[k]
    target[keys[-1]] = value
    return base


def merge_component_overrides(parser: Any, args: list[str]) -> list[str]:
    """``args`` with every override inside a component merged into one argument per component."""
    options = _dotted_options(args)
    if not options or "-h" in args or "--help" in args:
        return args
    skip = {i for start, end, _, _ in options for i in range(start, end)}
    skip |= {i for i, a in enumerate(args) if a.split("=")[0] == "--print_config"}  # it prints and exits
    config = _quiet_parse(parser, [a for i, a in enumerate(args) if i not in skip])
    if config is None:
        return args  # the real parse reports what is wrong
    root = config[config["subcommand"]] if config.get("subcommand") else config
    merged: dict[str, Any] = {}  # component key -> merged value
    first: dict[str, int] = {}  # component key -> where its first override was
    drop: set[int] = set()
    for start, end, key, raw in options:
        found = _component_at(root, key.split("."))
        if found is None:
            continue
        component, used = found
        inner = ".".join(k for k in key.split(".")[used:])
        if component not in merged:
            previous = root
            for k in component.split("."):
                previous = previous[k]
            merged[component], first[component] = to_config(previous), start
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        merged[component] = merge(merged[component], inner, value)
        drop.update(range(start, end))
    out: list[str] = []
    for i, arg in enumerate(args):
        for component, position in first.items():
            if position == i:
                out.append(f"--{component}={json.dumps(merged[component])}")
        if i not in drop:
            out.append(arg)
    return out
