"""The ``regkit`` command: ``regkit list`` and plugin loading here, ``regkit compare`` in
regkit/compare.py; ``fit|validate|test|predict`` go to LightningCLI (regkit/lightning_cli.py),
imported only then so ``regkit list`` starts fast.

``--plugins A[,B]`` (before the subcommand, repeatable) and the environment variable
``REGKIT_PLUGINS=A,B`` name local files or modules whose components to register. regkit reads
both and never rewrites either: the other processes of a multi-GPU run, which Lightning starts
with the same command line, find ``--plugins`` there.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

from regkit import registry
from regkit.registry import listing, plugins


def _pop_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--plugins A[,B]`` (repeatable) out of argv; ``REGKIT_PLUGINS`` adds more."""
    found = plugins.from_environment()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugins" and i + 1 < len(argv):
            found += [p for p in argv[i + 1].split(",") if p]
            i += 2
            continue
        if arg.startswith("--plugins="):
            found += [p for p in arg.split("=", 1)[1].split(",") if p]
        else:
            rest.append(arg)
        i += 1
    return rest, list(dict.fromkeys(found))


def list_command(argv: list[str]) -> int:
    """``regkit list [KIND] [PATTERN] [--json]``."""
    as_json = "--json" in argv
    words = [a for a in argv if a != "--json"]
    if any(w in ("-h", "--help") for w in words):
        print("usage: regkit list [KIND] [PATTERN] [--json]\n\nkinds: " + ", ".join(registry.KINDS))
        return 0
    kind: Optional[str] = words[0] if words else None
    pattern = words[1] if len(words) > 1 else "*"
    if kind is not None and kind not in registry.KINDS:
        # `regkit list '*drop*'` is a pattern over every kind
        if any(c in kind for c in "*?["):
            pattern, kind = kind, None
        else:
            try:
                registry.registry_of(kind)
            except registry.RegistryError as err:
                print(f"regkit list: {err}", file=sys.stderr)
                return 2
    found = registry.entries(kind, pattern)
    if as_json:
        print(listing.as_json(found))
        return 0
    if found:
        print(listing.as_table(found))
    else:
        print(f"no component matches kind={kind or '*'} pattern={pattern!r}")
    for name, error in plugins.plugin_errors.items():
        print(f"\nplugin {name!r} failed to load: {error}", file=sys.stderr)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """The ``regkit`` command. Bad input (a recipe value, a file, a plugin) ends with a two-line
    report naming the key and exit code 2 (regkit/reporting.py); ``REGKIT_DEBUG=1`` shows the
    traceback instead."""
    from regkit.errors import RegkitError
    from regkit.reporting import debug, print_error, subcommand_of

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except RegkitError as err:
        if debug():
            raise
        print_error(str(err), subcommand_of(args))
        return 2


def _main(argv: list[str]) -> int:
    from regkit import input_files, reporting

    argv, local_plugins = _pop_plugins(argv)
    for plugin in local_plugins:
        input_files.load_plugin(plugin)
    if argv and argv[0] == "compare":
        from regkit.compare import main as compare

        if local_plugins:  # every `regkit fit` that compare starts loads them too
            os.environ["REGKIT_PLUGINS"] = ",".join(local_plugins)
        return compare(argv[1:])
    if argv and argv[0] == "list":
        try:
            return list_command(argv[1:])
        except BrokenPipeError:  # `regkit list | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from regkit import warnings_filter

    reporting.current_subcommand = reporting.subcommand_of(argv)
    input_files.check_recipe_files(argv)
    from regkit.lightning_cli import RegkitCLI

    warnings_filter.install()
    RegkitCLI(args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
