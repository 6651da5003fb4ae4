"""How regkit reports bad input: two lines and exit code 2, no traceback, no page of usage.

::

    usage: regkit fit [--config RECIPE] [--KEY VALUE ...]   (regkit fit --help lists every key)
    regkit fit: error: model.init_args.network.hidden: must be > 0, got [1024, -1024]

The last line always names the YAML key (or the file) and what is wrong. ``REGKIT_DEBUG=1`` shows
jsonargparse's full message or the Python traceback instead.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn, Optional

from regkit.cli.commands import TRAINER_SUBCOMMANDS, USAGE
from regkit.errors import BadInput


def debug() -> bool:
    """``REGKIT_DEBUG=1`` (any value but empty or 0) asks for full messages and tracebacks."""
    return os.environ.get("REGKIT_DEBUG", "") not in ("", "0")


def print_error(message: str, subcommand: Optional[str] = None) -> None:
    """The two lines of every bad-input report, on stderr."""
    prog = f"regkit {subcommand}" if subcommand else "regkit"
    usage = f"{prog} [--config RECIPE] [--KEY VALUE ...]" if subcommand in TRAINER_SUBCOMMANDS else USAGE
    print(f"usage: {usage}   ({prog} --help lists every key)", file=sys.stderr)
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)


def fail(message: str, key: str = "") -> NoReturn:
    """Stop before anything runs: a :class:`BadInput` that ``regkit``'s main reports with
    :func:`print_error` (exit status 2)."""
    raise BadInput(message, key)
