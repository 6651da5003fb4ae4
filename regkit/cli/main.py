"""The ``regkit`` command: ``regkit list`` and plugin loading here, ``regkit recipes`` in
regkit/cli/shipped_recipes.py, ``regkit compare`` in regkit/compare/; ``fit|validate|test|predict`` go to LightningCLI (regkit/cli/lightning.py),
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
from regkit.cli.commands import subcommand_of, take_option
from regkit.cli.error_report import debug, print_error
from regkit.errors import RegkitError
from regkit.registry import listing, plugins


def _pop_plugins(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--plugins A[,B]`` (repeatable) out of argv; ``REGKIT_PLUGINS`` adds more."""
    rest, found = take_option(argv, "--plugins")
    return rest, list(dict.fromkeys(plugins.from_environment() + found))


def list_command(argv: list[str]) -> int:
    """``regkit list [KIND] [PATTERN] [--json]``."""
    as_json = "--json" in argv
    words = [a for a in argv if a != "--json"]
    if any(w in ("-h", "--help") for w in words):
        print("usage: regkit list [KIND] [PATTERN] [--json]\n\nkinds: " + ", ".join(registry.KINDS)
              + "\n\nregkit list rule: the keys of a regularization rule (docs/surgery.md)")
        return 0
    kind: Optional[str] = words[0] if words else None
    pattern = words[1] if len(words) > 1 else "*"
    if kind == "rule":
        return list_rule_schema(as_json)
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


def list_rule_schema(as_json: bool) -> int:
    """``regkit list rule``: the keys a regularization rule takes (regkit/rules/rule.py)."""
    from regkit.rules import FIELDS

    if as_json:
        import json

        print(json.dumps({"rule": FIELDS}, indent=2))
        return 0
    width = max(len(k) for k in FIELDS)
    print("rule (a list of them under a task's `regularize:` or regkit.callbacks.Regularize(rules=...)):")
    print("  selects modules by path and/or type (or parameters by params), then does one of insert, replace, set,")
    print("  wrap (modules) or penalty, constraint (parameters)\n")
    for key, text in FIELDS.items():
        print(f"  {key:<{width}}  {text}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """The ``regkit`` command. Bad input (a recipe value, a file, a plugin) ends with a two-line
    report naming the key and exit code 2 (regkit/cli/error_report.py); ``REGKIT_DEBUG=1`` shows
    the traceback instead."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except RegkitError as err:
        if debug():
            raise
        print_error(str(err), subcommand_of(args))
        return 2


def _main(argv: list[str]) -> int:
    from regkit.cli.local_plugins import load_plugin

    argv, local_plugins = _pop_plugins(argv)
    for plugin in local_plugins:
        load_plugin(plugin)
    from regkit.cli import shipped_recipes

    if argv and argv[0] == "compare":
        from regkit.compare import main as compare

        # every `regkit fit` it starts loads the plugins too; `--config gan` names a shipped recipe
        return compare(shipped_recipes.resolve_names(argv[1:]), plugins=local_plugins)

    if argv and argv[0] in ("list", "recipes"):
        try:
            return list_command(argv[1:]) if argv[0] == "list" else shipped_recipes.recipes_command(argv[1:])
        except BrokenPipeError:  # `regkit list | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from regkit.cli import warnings_filter
    from regkit.cli.recipe_files import check_recipe_files

    argv = shipped_recipes.resolve_names(argv)  # `--config gan`: the shipped recipe, from any directory
    check_recipe_files(argv)
    from regkit.cli.lightning import RegkitCLI

    warnings_filter.install()
    RegkitCLI(args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
