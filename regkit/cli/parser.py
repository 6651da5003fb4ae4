"""regkit's argument parser: Lightning's, with a parse error reported in two lines naming the key
(:func:`summarize_parse_error` reads jsonargparse's nested message) instead of the usage page, and
a recipe component that did not resolve reported by its full key (:func:`report_invalid_components`)."""
from __future__ import annotations

import re
import sys
from typing import Any, NoReturn, Optional

from lightning.pytorch.cli import LightningArgumentParser

from regkit.cli.commands import TRAINER_SUBCOMMANDS
from regkit.cli.error_report import debug, print_error
from regkit.errors import first_raised, in_short, is_bad_input
from regkit.registry.spec import invalid_specs


_KEY = re.compile(r'Parser key "([^"]+)"')
_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
    "Problem with given class_path",
    "In short:",
)


def summarize_parse_error(message: str) -> Optional[str]:
    """``model.init_args.network.dropout: unknown regularizer 'dropuot'; did you mean 'dropout'?``

    Walks the indentation of a nested jsonargparse message, keeping the path of ``Parser key``
    lines, and returns the deepest concrete error with its dotted key; None if none is found.
    """
    stack: list[tuple[int, str]] = []
    best: Optional[tuple[int, str, str]] = None
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
    leaf = best[2]
    given = re.findall(r"Given value: (.+)", message)
    if given and len(given[-1]) <= 60 and given[-1] not in leaf:
        leaf += f", got {given[-1].strip()}"
    return f"{best[1]}: {leaf}" if best[1] else leaf


class ShortErrorParser(LightningArgumentParser):
    """Lightning's parser; a parse error prints :func:`print_error`'s two lines (the key and what is
    wrong) instead of the usage page and jsonargparse's nested report, unless ``REGKIT_DEBUG=1``.

    ``subcommand``: the subcommand of the command line being parsed (set by RegkitCLI), which the
    report names even when the error comes from the main parser."""

    subcommand: Optional[str] = None

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        # jsonargparse reports whatever it catches while parsing as a parse error; one that is not
        # bad input (a bug in regkit's own code) shows its traceback instead (regkit/cli/error_keys.py).
        if ex is not None and not is_bad_input(ex, parsing=True):
            raise first_raised(ex) from None
        if not self.exit_on_error or debug():
            super().error(message, ex)
        summary = summarize_parse_error(message)
        if summary is None:
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            summary = lines[-1] if lines else message
        unknown = re.findall(r"--([\w.]+)", summary) if "nrecognized arguments" in summary else []
        if unknown:
            summary += self._close_matches(unknown[0])
        print_error(summary, self.subcommand or _subcommand_in(self.prog))
        sys.exit(2)


    def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:
        """As jsonargparse's, but a recipe with a component that did not resolve is not written:
        ``--print_config`` (which dumps inside the parse) reports the component instead."""
        report_invalid_components(self, cfg)
        return super().dump(cfg, *args, **kwargs)

    def _close_matches(self, key: str) -> str:
        """``; did you mean --trainer.max_epochs?`` for an unknown option, from the parser's keys."""
        import difflib

        try:
            keys = [k for k in self.get_defaults().keys() if k not in ("config", "subcommand")]
        except Exception:  # never fail while reporting an error
            return ""
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.75)
        return ("; did you mean " + " or ".join(f"--{k}" for k in close) + "?") if close else ""


def report_invalid_components(parser: LightningArgumentParser, config: Any) -> None:
    """Stop with the first recipe component that did not resolve, named by its full key (a bug in
    its constructor is raised, with its traceback)."""
    root = config[config["subcommand"]] if config.get("subcommand") else config
    for key, invalid in invalid_specs(root):
        error = invalid.error_under(key)
        parser.error(f'Parser key "{error.key}":\n  {error.message}\n\n{in_short(error)}')


def _subcommand_in(prog: str) -> Optional[str]:
    words = prog.split()
    return words[-1] if words and words[-1] in TRAINER_SUBCOMMANDS else None
