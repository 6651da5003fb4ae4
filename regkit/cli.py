"""The ``regkit`` command: ``regkit list`` and plugin loading here, ``regkit compare`` in
regkit/compare.py; ``fit|validate|test|predict``
go to LightningCLI (regkit/lightning_cli.py), imported only then so ``regkit list`` starts fast."""
from __future__ import annotations

import json
import os
import sys
from typing import Optional

from regkit import registry


def _pop_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--plugins A[,B]`` (repeatable) out of argv; ``REGKIT_PLUGINS`` adds more."""
    plugins = [p for p in os.environ.get("REGKIT_PLUGINS", "").split(",") if p]
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugins" and i + 1 < len(argv):
            plugins += [p for p in argv[i + 1].split(",") if p]
            i += 2
            continue
        if arg.startswith("--plugins="):
            plugins += [p for p in arg.split("=", 1)[1].split(",") if p]
        else:
            rest.append(arg)
        i += 1
    return rest, plugins


def format_arguments(entry: registry.Entry) -> str:
    parts = []
    for arg in entry.describe_arguments():
        text = arg["name"] + (f": {arg['type']}" if arg["type"] else "")
        text += f" = {arg['default']}" if arg["default"] else ""
        parts.append(text)
    return ", ".join(parts) or "(no arguments)"


def list_command(argv: list[str]) -> int:
    """``regkit list [KIND] [PATTERN] [--json]``."""
    as_json = "--json" in argv
    words = [a for a in argv if a != "--json"]
    if any(w in ("-h", "--help") for w in words):
        print("usage: regkit list [KIND] [PATTERN] [--json]\n\nkinds: " + ", ".join(registry.KINDS))
        return 0
    kind = words[0] if words else None
    pattern = words[1] if len(words) > 1 else "*"
    if kind is not None and kind not in registry.KINDS:
        # `regkit list '*drop*'` is a pattern over every kind
        if any(c in kind for c in "*?["):
            kind, pattern = None, kind
        else:
            try:
                registry.entries(kind)
            except registry.RegistryError as err:
                print(f"regkit list: {err}", file=sys.stderr)
                return 2
    found = registry.entries(kind, pattern)
    if as_json:
        rows = [
            {
                "kind": e.kind,
                "name": e.name,
                "origin": e.origin,
                "version": e.version,
                "doc": e.doc,
                "arguments": e.describe_arguments(),
            }
            for e in found
        ]
        print(json.dumps({"components": rows, "plugin_errors": registry.plugin_errors}, indent=2))
        return 0
    current = None
    for e in found:
        if e.kind != current:
            current = e.kind
            print(f"\n{current}")
        print(f"  {e.name:<24} {e.doc}")
        print(f"  {'':<24} args: {format_arguments(e)}")
        print(f"  {'':<24} from: {e.origin}{' ' + e.version if e.version else ''}")
    if not found:
        print(f"no component matches kind={kind or '*'} pattern={pattern!r}")
    for name, error in registry.plugin_errors.items():
        print(f"\nplugin {name!r} failed to load: {error}", file=sys.stderr)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from_command_line = argv is None
    argv, plugins = _pop_plugins(list(sys.argv[1:] if argv is None else argv))
    plugins = [os.path.abspath(p) if os.path.exists(p) else p for p in plugins]
    if plugins:
        # DDP launches the other processes with sys.argv (where --plugins is gone): pass it on.
        os.environ["REGKIT_PLUGINS"] = ",".join(dict.fromkeys(plugins))
    for plugin in dict.fromkeys(plugins):
        registry.load_module(plugin)
    if argv and argv[0] == "compare":
        from regkit.compare import main as compare

        return compare(argv[1:])
    if argv and argv[0] == "list":
        try:
            return list_command(argv[1:])
        except BrokenPipeError:  # `regkit list | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from regkit.lightning_cli import RegkitCLI

    if from_command_line:
        sys.argv[1:] = argv  # LightningCLI reads sys.argv itself; --plugins is already handled
    RegkitCLI(args=None if from_command_line else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
