"""The component registry: every pluggable part of regkit, found by ``(kind, name)``.

Each kind is one :class:`Registry` (regkit/registry/core.py) that owns its table, its spec type
and where its built-ins live; plugins extend any of them (regkit/registry/plugins.py); ``regkit
list`` shows them (regkit/registry/listing.py). Built-ins register when their kind is first used.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Optional, Union

from regkit.registry import plugins
from regkit.registry.core import REGISTRIES, Entry, Registry, RegistryError, did_you_mean, registry_of, snake_case
from regkit.registry.plugins import load_module, plugin_errors

# The kinds of component, one line each: name, where regkit's own ones live, whether a recipe's
# component is built once at parse time so its own value checks run before training.
regularizer = Registry("regularizer", ("regkit.regularizers",), trial_build=True)
norm = Registry("norm", ("regkit.norm",))
penalty = Registry("penalty", ("regkit.penalties", "regkit.activation_penalties", "regkit.gan.penalties"), True)
constraint = Registry("constraint", ("regkit.constraints",), trial_build=True)
attention = Registry("attention", ("regkit.attention",))
generator = Registry("generator", ("regkit.gan.generators",))
discriminator = Registry("discriminator", ("regkit.gan.discriminators",))
gan_loss = Registry("gan_loss", ("regkit.gan.losses",), trial_build=True)
network = Registry("network", ("regkit.networks",))

KINDS = tuple(REGISTRIES)

__all__ = [
    "KINDS",
    "REGISTRIES",
    "Entry",
    "Registry",
    "RegistryError",
    "available",
    "build",
    "did_you_mean",
    "entries",
    "get",
    "load_module",
    "plugin_errors",
    "plugins",
    "register",
    "registry_of",
    "snake_case",
    "unregister",
]


def register(kind: str, name: Optional[str] = None, override: bool = False) -> Callable[[Any], Any]:
    """Class or function decorator that registers a component under ``(kind, name)``.

    ``name`` defaults to the snake_case form of the object's name. Registering an existing
    ``(kind, name)`` again raises unless ``override=True``.
    """
    return registry_of(kind).register(name, override)


def unregister(kind: str, name: str) -> None:
    """Remove a component (tests and interactive sessions use this)."""
    registry_of(kind).unregister(name)


def get(kind: str, name: str) -> Entry:
    """The registry entry for ``(kind, name)``; unknown names fail listing close matches."""
    return registry_of(kind).get(name)


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Construct the component ``(kind, name)`` with ``kwargs``.

    Unknown names fail with close matches; unknown or missing arguments fail naming the
    argument and the component.
    """
    return registry_of(kind).build(name, **kwargs)


def available(kind: Optional[str] = None, pattern: str = "*") -> Union[list[str], dict[str, list[str]]]:
    """Registered names of ``kind`` (sorted), or a ``{kind: names}`` dict when ``kind`` is None.

    ``pattern`` is a shell wildcard, e.g. ``available("regularizer", "*drop*")``. Names that
    installed plugins declare as ``KIND.NAME`` entry points are included without importing them.
    """
    if kind is None:
        return {k: r.names(pattern) for k, r in REGISTRIES.items()}
    return registry_of(kind).names(pattern)


def entries(kind: Optional[str] = None, pattern: str = "*") -> list[Entry]:
    """Registry entries, sorted by kind then name; imports only the plugins that can match."""
    registries = list(REGISTRIES.values()) if kind is None else [registry_of(kind)]
    return [e for r in registries for e in r.entries(pattern) if fnmatch.fnmatch(e.name, pattern)]
