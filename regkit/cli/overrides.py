"""Command-line overrides inside a component, merged into the recipe's value of that component.

``--model.init_args.network.dropout.p 0.3`` sets one argument of the network's dropout and keeps
the rest; ``...network.dropout gaussian_dropout`` replaces the component; ``...network.dropout
null`` switches the slot off. jsonargparse hands a registered type such an override without the
component's previous value, so regkit merges it first, through the parser's public API only:

1. only options that may reach inside a component are looked at (:func:`may_reach_a_component`;
   none, the usual case: nothing is parsed here);
2. parse the command line without them, which gives each component's recipe value;
3. for each such option whose path passes through a component of that recipe, merge it into the
   component in command-line order, and give the merged component as one argument
   (``--model.init_args.network={...}``) in place of its overrides, for the real parse; the other
   options stay as they are (jsonargparse reports one that reaches nothing).
"""
from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Optional

import yaml

from regkit.errors import is_bad_input
from regkit.registry.spec import InvalidSpec, Spec, to_config


def may_reach_a_component(key: str) -> bool:
    """Whether the option ``key`` may set something inside a component: a slot and a key inside it
    after the last ``init_args`` (``model.init_args.network.dropout.p``, ``model.init_args.network.hidden``),
    or three keys without ``init_args`` (``model.network.hidden``), or an argument of a class given by
    class_path inside a task's argument (``model.init_args.network.init_args.depth``: merged when the
    network slot holds it, left to jsonargparse for ``model.init_args.optimizer.init_args.lr``). A key
    of a top-level class (``data.init_args.batch_size``) cannot: jsonargparse merges those itself."""
    keys = key.split(".")
    if "init_args" in keys:
        last = len(keys) - 1 - keys[::-1].index("init_args")
        # or an argument of a class given by class_path inside a slot (a foreign network:
        # model.init_args.network.init_args.depth): the parsed recipe tells whether that slot is a component
        return len(keys) - last - 1 >= 2 or keys.count("init_args") >= 2
    return len(keys) >= 3


def _dotted_options(args: list[str]) -> list[tuple[int, int, str, str]]:
    """``(start, end, key, raw value)`` of every ``--a.b.c value`` / ``--a.b.c=value`` that may reach
    inside a component (:func:`may_reach_a_component`)."""
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
            if may_reach_a_component(key) and not key.endswith("+"):
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


def _component_of(root: Any, key: str) -> Optional[tuple[str, str]]:
    """``(component key, key inside it)`` when the option ``key`` passes through a registry component
    of the parsed recipe ``root`` (the outermost one, as jsonargparse hands it the override); an
    ``init_args`` left out of ``key`` is stepped through as jsonargparse does."""
    node: Any = root
    path: list[str] = []
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, "get") and node.get(part) is not None:
            node = node.get(part)
        elif hasattr(node, "get") and hasattr(node.get("init_args"), "get") and node["init_args"].get(part) is not None:
            node, path = node["init_args"][part], [*path, "init_args"]
        else:
            return None
        path.append(part)
        if isinstance(node, (Spec, InvalidSpec)):
            return ".".join(path), ".".join(parts[i + 1:])
    return None


def merge_component_overrides(parser: Any, args: list[str]) -> list[str]:
    """``args`` with every override inside a component merged into one argument per component."""
    options = _dotted_options(args)
    if not options or "-h" in args or "--help" in args:
        return args
    printing = {i for i, a in enumerate(args) if a.split("=")[0] == "--print_config"}  # it prints and exits
    # 1. The recipe's values from everything else on the command line.
    drop = {i for start, end, _, _ in options for i in range(start, end)}
    config = _quiet_parse(parser, [a for i, a in enumerate(args) if i not in drop | printing])
    if config is None:
        return args  # the real parse reports what is wrong
    root = config[config["subcommand"]] if config.get("subcommand") else config
    # 2. The overrides that reach inside a component, merged into its value in command-line order.
    merged: dict[str, Any] = {}  # component key -> merged value
    first: dict[str, int] = {}  # component key -> where its first override was
    taken: set[int] = set()  # the arguments of the merged options (the others stay as they are)
    for start, end, key, raw in options:
        found = _component_of(root, key)
        if found is None:
            continue
        component, inner = found
        taken.update(range(start, end))
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
        if i not in taken:
            out.append(arg)
    return out
