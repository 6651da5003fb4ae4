"""Plugin discovery: installed packages (entry points), local files and modules.

Installed plugins declare entry points in the group ``regkit.plugins``; they are read as metadata
and imported only when needed:

* an entry point named ``KIND.NAME`` (e.g. ``regularizer.concrete_dropout =
  "regkit_concrete_dropout:ConcreteDropout"``) is known by name without importing anything; its
  module is imported the first time that component is built, listed with its arguments, or named
  in a recipe. If the module does not register the name itself, the object the entry point names
  is registered under it;
* any other entry point (e.g. ``my_plugin = "my_plugin"``) is a module or a function that registers
  components; it is imported when a name is not found among the known ones, or when everything is
  listed.

A plugin that fails to import is reported by name with its error (:data:`plugin_errors`, ``regkit
list``) and everything else keeps working.

Environment variables (read, never written, by regkit):

* ``REGKIT_PLUGINS=a.py,my_pkg.layers``: local files or modules to load, like ``--plugins``;
* ``REGKIT_DISABLE_PLUGIN_AUTOLOAD=1``: ignore installed entry points (as pytest's
  ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``); only ``--plugins`` / ``REGKIT_PLUGINS`` are loaded.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

from regkit.errors import RegkitError
from regkit.registry.core import LOADING_DIST, LOCAL_PREFIX, REGISTRIES, Registry, RegistryError

ENTRY_POINT_GROUP = "regkit.plugins"
PLUGINS_ENV = "REGKIT_PLUGINS"
DISABLE_AUTOLOAD_ENV = "REGKIT_DISABLE_PLUGIN_AUTOLOAD"


def autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")


def dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.split(":")[0].split(".")[0]


class PluginLoader:
    """The installed plugins (entry points of ``regkit.plugins``): read as metadata once, each
    imported at most once, failures kept by entry-point name in :attr:`errors`.

    Every registry asks the one :data:`installed` loader for the names it does not hold
    (regkit/registry/__init__.py passes it as their ``source``).
    """

    def __init__(self) -> None:
        # Failures by entry-point name: "<distribution> (<module:attr>): <Error>: <message>".
        self.errors: dict[str, str] = {}
        self._entry_points: Optional[tuple[dict[tuple[str, str], Any], list[Any]]] = None
        self._attempted: set[str] = set()  # entry points already imported (or tried)

    def entry_points(self) -> list[Any]:
        """Every installed entry point regkit may load (none when autoload is disabled)."""
        named, other = self._read()
        return [*named.values(), *other]

    def top_level_modules(self) -> set[str]:
        """The top-level modules the installed plugins' entry points name (nothing imported)."""
        return {ep.value.split(":")[0].split(".")[0] for ep in self.entry_points()}

    def distributions(self) -> dict[str, str]:
        """Name -> version of each installed distribution that provides a plugin."""
        return {ep.dist.name: ep.dist.version for ep in self.entry_points() if getattr(ep, "dist", None) is not None}

    def _read(self) -> tuple[dict[tuple[str, str], Any], list[Any]]:
        """Entry points of ``regkit.plugins`` (metadata only, read once): ``KIND.NAME`` ones by key,
        and the others."""
        if self._entry_points is None:
            named: dict[tuple[str, str], Any] = {}
            other: list[Any] = []
            if not autoload_disabled():
                for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                    kind, dot, name = ep.name.partition(".")
                    if dot and kind in REGISTRIES and name:
                        named.setdefault((kind, name), ep)
                    else:
                        other.append(ep)
            self._entry_points = (named, other)
        return self._entry_points

    def declared(self, kind: str) -> dict[str, str]:
        """Names that installed plugins declare for ``kind`` (nothing imported): name -> distribution."""
        return {name: dist_name(ep) for (k, name), ep in self._read()[0].items() if k == kind}

    def _load(self, ep: Any, registry: Optional[Registry] = None, name: str = "") -> bool:
        """Import one entry point (once); record and warn on failure instead of raising."""
        if ep.name in self._attempted:
            return ep.name not in self.errors
        self._attempted.add(ep.name)
        dist = dist_name(ep)
        token = LOADING_DIST.set(dist)
        try:
            loaded = ep.load()
            if registry is not None:
                if not registry.holds(name) and not inspect.ismodule(loaded):
                    registry.register(name)(loaded)  # the entry point names the component itself
                if not registry.holds(name):
                    raise RegkitError(f"importing {ep.value} did not register {registry.kind} {name!r}")
            elif callable(loaded) and not isinstance(loaded, type):
                loaded()  # a function that registers components
        except (Exception, SystemExit) as err:  # a broken (or exiting) plugin must not break the others
            self.errors[ep.name] = f"{dist} ({ep.value}): {type(err).__name__}: {err}"
            warnings.warn(f"regkit plugin {ep.name!r} from {dist} failed to load: {err}", stacklevel=3)
            return False
        finally:
            LOADING_DIST.reset(token)
        return True

    def load_unnamed(self) -> None:
        """Import the entry points that are not named ``KIND.NAME`` (their names are unknown)."""
        for ep in self._read()[1]:
            self._load(ep)

    def load_for(self, registry: Registry, name: str, strict: bool = True) -> None:
        """Import what can provide ``name``: the plugin that declares it, else the unnamed plugins.
        A declaring plugin that fails raises (``strict``) or is only recorded in :attr:`errors`."""
        ep = self._read()[0].get((registry.kind, name))
        if ep is None:
            self.load_unnamed()
        elif not self._load(ep, registry, name) and strict:
            raise RegistryError(f"{registry.kind} {name!r} is provided by plugin {self.errors[ep.name]}")


installed = PluginLoader()
"""The loader every registry uses."""
plugin_errors = installed.errors
"""Plugins that failed to load, by entry-point name (``regkit list`` shows them)."""


def load_module(target: str) -> None:
    """Register the components in a local ``.py`` file or an importable module name."""
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise RegkitError(f"plugin file not found: {target}")
        module_name = LOCAL_PREFIX + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise RegkitError(f"cannot import plugin file: {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(target)


def from_environment() -> list[str]:
    """The local plugins named in ``REGKIT_PLUGINS`` (comma-separated)."""
    return [p for p in os.environ.get(PLUGINS_ENV, "").split(",") if p]
