"""What ``regkit list`` shows about a component: its summary, arguments and where it came from."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from regkit.registry import plugins

if TYPE_CHECKING:
    from regkit.registry.core import Entry

def summary(entry: "Entry") -> str:
    """The summary of the component's docstring: its first paragraph, on one line."""
    return entry.doc


def origin(entry: "Entry") -> str:
    """The installed distribution that provides the component, else its module or file."""
    return entry.origin


def version(entry: "Entry") -> str:
    """Version of the distribution in :func:`origin` ("" for a local file or module)."""
    return entry.version


def format_arguments(entry: "Entry") -> str:
    parts = []
    for arg in entry.describe_arguments():
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
    for param, described in zip(entry.parameters, entry.describe_arguments()):
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
