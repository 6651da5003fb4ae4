"""Command-line overrides inside a component, merged into the recipe's value of that component.

``--model.init_args.network.dropout.p 0.3`` sets one argument of the network's dropout and keeps
the rest; ``...network.dropout gaussian_dropout`` replaces the component; ``...network.dropout
null`` switches the slot off. jsonargparse hands a registered type such an override without the
component's previous value, so regkit merges it first, through the parser's public API only:

1. parse the command line as given: jsonargparse hands each such override to the component's
   spec type, which keeps it as an ``InvalidSpec`` marked ``override`` (it has no previous value);
   that says which components were reached, and other dotted options are left alone;
2. parse again without those overrides, which gives each reached component's recipe value;
3. merge the overrides into it in command-line order, and give the merged component as one
   argument (``--model.init_args.network={...}``) in place of its overrides, for the real parse.
"""
from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Optional

import yaml

from regkit.errors import is_bad_input
from regkit.registry.spec import invalid_specs, to_config



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
    """Parse without printing or exiting; None when the command line is bad input (the real parse
    reports it). A bug propagates with its traceback."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(args)
        except SystemExit:  # the parser reported bad input (to the discarded stderr)
            return None
        except Exception as err:
            if is_bad_input(err, parsing=True):
                return None
            raise


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


def _strip(key: str) -> list[str]:
    return [k for k in key.split(".") if k != "init_args"]


def merge_component_overrides(parser: Any, args: list[str]) -> list[str]:
    """``args`` with every override inside a component merged into one argument per component."""
    options = _dotted_options(args)
    if not options or "-h" in args or "--help" in args:
        return args
    printing = {i for i, a in enumerate(args) if a.split("=")[0] == "--print_config"}  # it prints and exits
    # 1. Which components did an override reach without their value? (only those are merged)
    config = _quiet_parse(parser, [a for i, a in enumerate(args) if i not in printing])
    if config is None:
        return args  # the real parse reports what is wrong
    root = config[config["subcommand"]] if config.get("subcommand") else config
    reached = [key for key, invalid in invalid_specs(root) if invalid.override]
    inside = {}  # option start -> (component key, key inside it)
    for start, _, key, _ in options:
        for component in reached:
            outer = _strip(component)
            if _strip(key)[: len(outer)] == outer and len(_strip(key)) > len(outer):
                inside[start] = (component, ".".join(_strip(key)[len(outer):]))
    if not inside:
        return args
    # 2. The components' values from everything else on the command line.
    drop = {i for start, end, _, _ in options if start in inside for i in range(start, end)}
    config = _quiet_parse(parser, [a for i, a in enumerate(args) if i not in drop | printing])
    if config is None:
        return args
    root = config[config["subcommand"]] if config.get("subcommand") else config
    merged: dict[str, Any] = {}  # component key -> merged value
    first: dict[str, int] = {}  # component key -> where its first override was
    for start, _, _, raw in options:
        if start not in inside:
            continue
        component, inner = inside[start]
        if component not in merged:
            merged[component], first[component] = to_config(root[component]), start
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        merged[component] = merge(merged[component], inner, value)
    # 3. One argument per component, where its first override was.
    out: list[str] = []
    for i, arg in enumerate(args):
        out += [f"--{c}={json.dumps(merged[c])}" for c, position in first.items() if position == i]
        if i not in drop:
            out.append(arg)
    return out
