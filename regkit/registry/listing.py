"""What ``regkit list`` shows about a component: its summary, arguments and where it came from."""
from __future__ import annotations

import importlib.metadata
import inspect
import json
import sys
from typing import TYPE_CHECKING, Any, Optional

from regkit.registry import plugins

if TYPE_CHECKING:
    from regkit.registry.core import Entry

_dists_cache: Optional[dict[str, list[str]]] = None


def _packages_distributions() -> dict[str, list[str]]:
    global _dists_cache
    if _dists_cache is None:
        _dists_cache = dict(importlib.metadata.packages_distributions())
    return _dists_cache


def summary(entry: "Entry") -> str:
    """The summary of the component's docstring: its first paragraph, on one line."""
    doc = (inspect.getdoc(entry.obj) or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def origin(entry: "Entry") -> str:
    """The installed distribution that provides the component, else its module or file."""
    if entry.dist:
        return entry.dist
    dists = _packages_distributions().get(entry.module.split(".")[0])
    if dists:
        return dists[0]
    path = getattr(sys.modules.get(entry.module), "__file__", None)
    return path if path and entry.module.startswith(plugins.LOCAL_PREFIX) else entry.module


def version(entry: "Entry") -> str:
    """Version of the distribution in :func:`origin` ("" for a local file or module)."""
    try:
        return importlib.metadata.version(origin(entry))
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe_arguments(entry: "Entry") -> list[dict[str, str]]:
    out = []
    for p in entry.parameters:
        ann = p.annotation
        type_name = "" if ann is p.empty else (ann if isinstance(ann, str) else _type_name(ann))
        default = "" if p.default is p.empty else repr(p.default)
        out.append({"name": p.name, "type": type_name, "default": default})
    return out


def format_arguments(entry: "Entry") -> str:
    parts = []
    for arg in describe_arguments(entry):
        text = arg["name"] + (f": {arg['type']}" if arg["type"] else "")
        text += f" = {arg['default']}" if arg["default"] else ""
        parts.append(text)
    return ", ".join(parts) or "(no arguments)"


def json_value(value: Any) -> Any:
    """``value`` as plain JSON (specs as their recipe mapping, tuples as lists); text (its repr) for
    anything JSON has no value for (objects, NaN, infinity)."""
    if hasattr(value, "to_config"):
        value = value.to_config()
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def json_arguments(entry: "Entry") -> list[dict[str, Any]]:
    """Each argument's name, type (as text), whether it is required and, if not, its default as a
    JSON value."""
    rows = []
    for param, described in zip(entry.parameters, describe_arguments(entry)):
        row: dict[str, Any] = {"name": described["name"], "type": described["type"]}
        row["required"] = param.default is param.empty
        if not row["required"]:
            row["default"] = json_value(param.default)
        rows.append(row)
    return rows


def as_json(found: list["Entry"]) -> str:
    rows = [
        {
            "kind": e.kind,
            "name": e.name,
            "origin": origin(e),
            "version": version(e),
            "doc": summary(e),
            "arguments": json_arguments(e),
        }
        for e in found
    ]
    return json.dumps({"components": rows, "plugin_errors": plugins.plugin_errors}, indent=2)


def as_table(found: list["Entry"]) -> str:
    lines: list[str] = []
    current = None
    for e in found:
        if e.kind != current:
            current = e.kind
            lines.append(f"\n{current}")
        lines.append(f"  {e.name:<24} {summary(e)}")
        lines.append(f"  {'':<24} args: {format_arguments(e)}")
        v = version(e)
        lines.append(f"  {'':<24} from: {origin(e)}{' ' + v if v else ''}")
    return "\n".join(lines)
