"""regkit's own errors, and the one-line argument check every constructor uses to raise them.

Each error carries the recipe key it is about, so the CLI names it exactly.

A component or spec raises :class:`RegkitError` with the key it knows (``"dropout"`` inside a
network, ``"p"`` inside a regularizer); whoever holds the outer part of the path prefixes it with
:meth:`RegkitError.under` (the CLI adds ``model.init_args.network``). The CLI ends its message with
one line, ``In short: <key>: <message>`` (see :func:`in_short`).

:func:`is_bad_input` is the rule that tells the user's bad input (two lines, exit 2) from a bug (a
traceback); regkit/cli/error_keys.py explains it.
"""
from __future__ import annotations

import argparse
import math
import numbers
from pathlib import Path
from typing import Any, Mapping


def join_key(*parts: str) -> str:
    """``join_key("model.init_args", "network", "")`` -> ``"model.init_args.network"``."""
    return ".".join(p for p in parts if p)


class RegkitError(ValueError):
    """Bad input to regkit: a recipe value, a component argument, a file.

    Args:
        message: what is wrong, without the key (``"unknown regularizer 'dropuot'; ..."``).
        key: the dotted recipe key it is about, as far as the raiser knows it ("" if none).
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message, key)
        self.message = message
        self.key = key

    def under(self, prefix: str) -> "RegkitError":
        """The same error with ``prefix`` in front of its key (same class, cause kept)."""
        err = type(self)(self.message, join_key(prefix, self.key))
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def in_short(error: RegkitError) -> str:
    """The last line of every CLI error regkit reports: ``In short: <key>: <message>``."""
    return f"In short: {error}"


class BadInput(RegkitError):
    """A recipe value, command-line argument or file that regkit refuses (see :class:`RegkitError`:
    ``message`` says what is wrong with the offending value, ``key`` is the argument, the dotted
    recipe key or the file)."""


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _fails(value: Any, ok: Any) -> bool:
    for v in _values(value):
        if v is None or isinstance(v, bool):
            continue
        if not isinstance(v, numbers.Real) or not math.isfinite(v) or not ok(v):
            return True
    return False


_RULES = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "non_negative": (lambda v: v >= 0, "must be >= 0"),
    "rate": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "fraction": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
}


def check(
    arguments: Mapping[str, Any],
    positive: str = "",
    non_negative: str = "",
    rate: str = "",
    fraction: str = "",
) -> None:
    """Check constructor arguments by name, e.g. ``check(locals(), positive="hidden out_features")``.

    Each rule takes space-separated argument names; a list value is checked item by item and None is
    skipped (an optional argument left out). Every number must also be finite.

    Raises:
        BadInput: naming the first argument that breaks its rule, with its value.
    """
    for rule, names in (("positive", positive), ("non_negative", non_negative), ("rate", rate), ("fraction", fraction)):
        ok, text = _RULES[rule]
        for name in names.split():
            value = arguments[name]
            if _fails(value, ok):
                raise BadInput(f"{text}, got {value!r}", name)


def describe(err: BaseException) -> str:
    """An error as one line: its message, with its type unless it is a plain value/type error."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (ValueError, TypeError, FileNotFoundError)) and not isinstance(err, BadInput):
        return text
    return text if isinstance(err, BadInput) else f"{type(err).__name__}: {text}"


# ------------------------------------------------------------------------- bad input or a bug
_REGKIT_DIR = Path(__file__).resolve().parent

REFUSALS: tuple[type[BaseException], ...] = (TypeError, OverflowError, argparse.ArgumentError)
"""Errors a library raises to refuse a value it was given (jsonargparse, torch, Lightning)."""


def error_chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors it was raised from (``raise ... from``), outermost first; the last one
    is the error first raised (an error raised while handling another is not caused by it)."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in chain):
        chain.append(current)
        current = current.__cause__
    return chain


def raised_in_regkit(err: BaseException) -> bool:
    """Whether ``err`` was raised in regkit's own code (the innermost frame of its traceback)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_REGKIT_DIR)


def is_bad_input(err: BaseException, also: tuple[type[BaseException], ...] = (), parsing: bool = False) -> bool:
    """Whether ``err`` is the user's bad input (reported in two lines, exit 2) rather than a bug
    (shown with its traceback). Bad input is:

    * a :class:`RegkitError` anywhere in the chain of causes (regkit's own checks);
    * an error first raised as a ``ValueError`` (regkit's constructors, like torch's, refuse a value
      with it: ``p must be a probability``) or an ``OSError`` (a file the user named);
    * an error first raised as one of :data:`REFUSALS` (or ``also``) outside regkit's own code:
      jsonargparse, torch or Lightning refusing the value they were given;
    * ``parsing``: any error jsonargparse caught and reports, first raised outside regkit's code
      (an option it does not know is a ``KeyError``, a ``class_path`` that does not import an
      ``ImportError`` or ``AttributeError``).

    Anything else is a bug: ``AttributeError``, ``KeyError``, ``IndexError``, ``AssertionError``,
    ``RuntimeError``, a ``TypeError`` raised in regkit's code (a wrong call), ...
    """
    chain = error_chain(err)
    if any(isinstance(e, RegkitError) for e in chain):
        return True
    origin = chain[-1]
    if isinstance(origin, (ValueError, OSError)):
        return True
    refusals = (Exception,) if parsing else (*REFUSALS, *also)
    return isinstance(origin, refusals) and not raised_in_regkit(origin)


def first_raised(err: BaseException) -> BaseException:
    """The error first raised in the chain of causes of ``err`` (``err`` itself if it has none)."""
    return error_chain(err)[-1]
