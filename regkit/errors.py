"""regkit's own errors: each carries the recipe key it is about, so the CLI names it exactly.

A component or spec raises :class:`RegkitError` with the key it knows (``"dropout"`` inside a
network, ``"p"`` inside a regularizer); whoever holds the outer part of the path prefixes it with
:meth:`RegkitError.under` (the CLI adds ``model.init_args.network``). The CLI ends its message with
one line, ``In short: <key>: <message>`` (see :func:`in_short`).
"""
from __future__ import annotations


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
