"""The component registry: every pluggable part of regkit, found by ``(kind, name)``.

Each kind is one :class:`Registry` (regkit/registry/core.py) that owns its table and where its
built-ins live; its spec type (regkit/registry/spec.py) is how a recipe names one of its
components; installed plugins extend any of them (regkit/registry/plugins.py); ``regkit list``
shows them (regkit/registry/listing.py). Built-ins register when their kind is first used.

Imports run one way: core <- spec <- plugins, listing <- this package.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Optional, Union

from regkit.registry import plugins
from regkit.registry.core import REGISTRIES, Entry, Registry, RegistryError, did_you_mean, registry_of, snake_case
from regkit.registry.plugins import installed, load_module, plugin_errors
from regkit.registry.spec import InvalidSpec, Spec

# The kinds of component, one line each: name, where regkit's own ones live, whether a recipe's
# component is built once at parse time so its own value checks run before training.
regularizer = Registry("regularizer", ("regkit.components.regularizers",), trial_build=True, source=installed)
norm = Registry("norm", ("regkit.components.norm",), source=installed)
penalty = Registry("penalty", ("regkit.components.penalties", "regkit.components.activation_penalties",
                               "regkit.gan.penalties"), trial_build=True, source=installed)
constraint = Registry("constraint", ("regkit.components.constraints",), trial_build=True, source=installed)
attention = Registry("attention", ("regkit.components.attention",), source=installed)
generator = Registry("generator", ("regkit.gan.generators",), source=installed)
discriminator = Registry("discriminator", ("regkit.gan.discriminators",), source=installed)
gan_loss = Registry("gan_loss", ("regkit.gan.losses",), trial_build=True, source=installed)
network = Registry("network", ("regkit.networks",), source=installed)
schedule = Registry("schedule", ("regkit.components.schedules",), trial_build=True, source=installed)

KINDS = tuple(REGISTRIES)

# Each kind's spec type: the annotation of a slot that takes one of its components.
class RegularizerSpec(Spec, registry=regularizer):
    """A regularizer chosen by a recipe: its registry name and arguments."""


class NormSpec(Spec, registry=norm):
    """A norm chosen by a recipe: its registry name and arguments."""


class PenaltySpec(Spec, registry=penalty):
    """A penalty chosen by a recipe: its registry name and arguments."""


class ConstraintSpec(Spec, registry=constraint):
    """A constraint chosen by a recipe: its registry name and arguments."""


class AttentionSpec(Spec, registry=attention):
    """An attention block chosen by a recipe: its registry name and arguments."""


class GeneratorSpec(Spec, registry=generator):
    """A GAN generator chosen by a recipe: its registry name and arguments."""


class DiscriminatorSpec(Spec, registry=discriminator):
    """A GAN discriminator chosen by a recipe: its registry name and arguments."""


class GanLossSpec(Spec, registry=gan_loss):
    """A GAN loss chosen by a recipe: its registry name and arguments."""


class NetworkSpec(Spec, registry=network):
    """A network chosen by a recipe: its registry name and arguments."""


class ScheduleSpec(Spec, registry=schedule):
    """A schedule of a component's argument: ``{schedule: linear, start: 0, end: 0.1, until: 0.3}``."""

    @classmethod
    def parse(cls, value: Any) -> "ScheduleSpec":
        if isinstance(value, dict) and "schedule" in value:
            value = {"name": value["schedule"], **{k: v for k, v in value.items() if k != "schedule"}}
        return super().parse(value)

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        return {"schedule": config.pop("name"), **config}


__all__ = [
    "AttentionSpec",
    "ConstraintSpec",
    "DiscriminatorSpec",
    "GanLossSpec",
    "GeneratorSpec",
    "InvalidSpec",
    "NetworkSpec",
    "NormSpec",
    "PenaltySpec",
    "RegularizerSpec",
    "ScheduleSpec",
    "Spec",
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
    "installed",
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
