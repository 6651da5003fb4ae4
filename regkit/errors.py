"""Turning jsonargparse's nested parse errors into one line that names the YAML key."""
from __future__ import annotations

import re
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

_KEY = re.compile(r'Parser key "([^"]+)"')
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
    "Problem with given class_path",
)


def summarize_parse_error(message: str) -> str | None:
    """``model.init_args.network.dropout: unknown regularizer 'dropuot'; did you mean 'dropout'?``

    Walks the indentation of a nested jsonargparse message, keeping the path of ``Parser key``
    lines, and returns the deepest concrete error with its dotted key; None if none is found.
    """
    stack: list[tuple[int, str]] = []
    best: tuple[int, str, str] | None = None
    for raw in message.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        text = line.strip().removeprefix("- ").removeprefix("error: ")
        if text.startswith("Problem with given class_path"):
            stack.append((indent, "init_args"))
            continue
        keys = _KEY.findall(text)
        if keys:  # a context line: its children hold the concrete error
            stack.extend((indent, key) for key in keys)
            continue
        leaf = re.sub(r"^Not of type \w+: ", "", text).strip()
        if not leaf or leaf.endswith(":") or any(leaf.startswith(n) for n in _NOISE):
            continue
        path = ".".join(seg for _, seg in stack)
        if best is None or path.count(".") > best[0]:
            best = (path.count("."), path, leaf.rstrip(":"))
    if best is None:
        return None
    return f"{best[1]}: {best[2]}" if best[1] else best[2]


class RegkitArgumentParser(LightningArgumentParser):
    """Lightning's parser, with a one-line summary naming the YAML key after a nested error."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        summary = summarize_parse_error(message)
        if summary:
            message = f"{message}\n\nIn short: {summary}"
        super().error(message, ex)
