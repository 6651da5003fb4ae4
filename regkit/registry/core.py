"""One :class:`Registry` per kind of component: its table of names, where its built-ins live and
where the rest come from (in the spirit of MMEngine's ``Registry``). Imports nothing else of regkit
but its errors: specs (spec.py) and plugin discovery (plugins.py) build on this module."""
from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from regkit.errors import RegkitError, is_bad_input

# The module name of a local plugin file loaded by regkit/registry/plugins.py: this prefix + its stem.
LOCAL_PREFIX = "regkit_local_plugin_"

# Every kind by name, in the order they were created (``regkit list`` shows them in this order).
REGISTRIES: dict[str, "Registry"] = {}

# The installed distribution whose plugin is being imported now (set by regkit/registry/plugins.py),
# recorded in the entries it registers.
LOADING_DIST: ContextVar[Optional[str]] = ContextVar("regkit_loading_dist", default=None)


class EntrySource(Protocol):
    """Where a registry finds components it does not hold yet: installed plugins
    (:class:`regkit.registry.plugins.PluginLoader`)."""

    def declared(self, kind: str) -> dict[str, str]:
        """Names declared for ``kind`` without importing anything: name -> distribution."""

    def load_for(self, registry: "Registry", name: str, strict: bool = True) -> None:
        """Import what can provide ``name`` of ``registry``'s kind."""

    def load_unnamed(self) -> None:
        """Import the sources whose names are not declared."""


class RegistryError(RegkitError):
    """A component could not be registered, found or built."""


@dataclass(frozen=True)
class Entry:
    """One registered component: what it is called and where it came from."""

    kind: str
    name: str
    obj: Callable[..., Any]
    module: str
    dist: Optional[str] = None  # the installed distribution, when it came from an entry point

    @property
    def parameters(self) -> list[inspect.Parameter]:
        params = inspect.signature(self.obj).parameters.values()
        return [p for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @property
    def accepts_any_kwargs(self) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.obj).parameters.values())

    @property
    def doc(self) -> str:
        """The summary of the component's docstring: its first paragraph, on one line."""
        doc = (inspect.getdoc(self.obj) or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @property
    def origin(self) -> str:
        """The installed distribution that provides the component, else its file (a local plugin)
        or its module."""
        if self.dist:
            return self.dist
        dists = _packages_distributions().get(self.module.split(".")[0])
        if dists:
            return dists[0]
        path = getattr(sys.modules.get(self.module), "__file__", None)
        return path if path and self.module.startswith(LOCAL_PREFIX) else self.module

    @property
    def version(self) -> str:
        """Version of the distribution in :attr:`origin` ("" for a local file or module)."""
        try:
            return importlib.metadata.version(self.origin)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            return ""

    def describe_arguments(self) -> list[dict[str, str]]:
        """Each argument's name, type and default, as text (``regkit list``)."""
        out = []
        for p in self.parameters:
            ann = p.annotation
            type_name = "" if ann is p.empty else (ann if isinstance(ann, str) else _type_name(ann))
            default = "" if p.default is p.empty else repr(p.default)
            out.append({"name": p.name, "type": type_name, "default": default})
        return out


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _same_definition(old: Any, new: Any) -> bool:
    """The same object, or the same definition run again (a plugin file loaded twice): harmless."""
    return old is new or (
        getattr(old, "__module__", None) == getattr(new, "__module__", 0)
        and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", 0)
    )


def snake_case(name: str) -> str:
    """``GhostBatchNorm`` -> ``ghost_batch_norm``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def did_you_mean(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


class Registry:
    """The components of one kind, found by name.

    Args:
        kind: the kind's name (``"regularizer"``), used in recipes, errors and entry points.
        builtins: modules whose import registers regkit's own components of this kind; a package
            stands for all its public submodules (a new file there registers itself).
        trial_build: build a component once while its recipe is parsed, so the component's own
            checks (e.g. ``p=1.5``) stop the run before training. For small, cheap kinds.
        source: where components not registered yet come from (installed plugins), if anywhere.

    ``registry.Spec`` is the kind's spec type (regkit/registry/spec.py): the annotation of a slot
    that takes a component of this kind (``dropout: Optional[RegularizerSpec]``), checked by
    jsonargparse at parse time.
    """

    Spec: Any  # the kind's regkit.registry.spec.Spec subclass, set when that class is defined

    def __init__(
        self, kind: str, builtins: tuple[str, ...] = (), trial_build: bool = False, source: Optional[EntrySource] = None
    ) -> None:
        if kind in REGISTRIES:
            raise RegistryError(f"kind {kind!r} already exists")
        self.kind = kind
        self.builtins = builtins
        self.trial_build = trial_build
        self.source = source
        self._entries: dict[str, Entry] = {}
        self._overridden: set[str] = set()  # names registered with override=True: later plain ones keep them
        self._builtins_loaded = False
        REGISTRIES[kind] = self

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} registered)"

    # ------------------------------------------------------------------ registration
    def register(self, name: Optional[str] = None, override: bool = False) -> Callable[[Any], Any]:
        """Class or function decorator: register under ``name`` (default: snake_case of its name).
        ``override=True`` replaces a component of that name, built-in or from an installed plugin,
        whether the plugin is imported before or after."""

        def decorator(obj: Any) -> Any:
            key = name or snake_case(obj.__name__)
            if override:  # replace a built-in now, not be replaced by it when the built-ins load later
                self.load_builtins()
                self._overridden.add(key)
            old = self._entries.get(key)
            if old is not None and not override and not _same_definition(old.obj, obj):
                if key in self._overridden:
                    # An installed plugin imported after the override registers the name it replaced:
                    # the override stays (it was asked for), the plugin's other components register.
                    return obj
                raise RegistryError(
                    f"{self.kind} {key!r} is already registered (from {old.module}); pass override=True to replace it"
                )
            self._entries[key] = Entry(self.kind, key, obj, getattr(obj, "__module__", "?"), LOADING_DIST.get())
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a component (tests and interactive sessions use this)."""
        self._entries.pop(name, None)
        self._overridden.discard(name)

    def holds(self, name: str) -> bool:
        """Whether ``name`` is registered now (nothing is imported to find it)."""
        return name in self._entries

    def load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for name in self.builtins:
            module = importlib.import_module(name)
            for info in sorted(pkgutil.iter_modules(getattr(module, "__path__", [])), key=lambda i: i.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{name}.{info.name}")

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name fails listing close matches."""
        self.load_builtins()
        entry = self._entries.get(name)
        if entry is None and self.source is not None:
            self.source.load_for(self, name)
            entry = self._entries.get(name)
        if entry is None:
            names = self.names()
            hint = did_you_mean(name, names) or f"; available: {', '.join(names) or '(none)'}"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint}")
        return entry

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (sorted), plugins' declared names included without importing them."""
        self.load_builtins()
        names = set(self._entries)
        if self.source is not None:
            self.source.load_unnamed()
            names |= set(self.source.declared(self.kind))
        return sorted(n for n in names if fnmatch.fnmatch(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry]:
        """Entries matching ``pattern``, importing only the plugins whose names match."""
        self.load_builtins()
        if self.source is not None:
            for name in self.source.declared(self.kind):
                if fnmatch.fnmatch(name, pattern) and name not in self._entries:
                    self.source.load_for(self, name, strict=False)
            self.source.load_unnamed()
        return [e for n, e in sorted(self._entries.items()) if fnmatch.fnmatch(n, pattern)]

    # ------------------------------------------------------------------ building
    def check_arguments(self, entry: Entry, kwargs: dict[str, Any], provided: tuple[str, ...] = ()) -> None:
        """Raise if ``kwargs`` names an argument the component does not take, or lacks a required
        one (``provided`` lists those the caller fills in itself, e.g. ``num_features``)."""
        names = [p.name for p in entry.parameters]
        if not entry.accepts_any_kwargs:
            for key in kwargs:
                if key not in names:
                    raise RegistryError(
                        f"{entry.kind} {entry.name!r} has no argument {key!r}{did_you_mean(key, names)}"
                        f"; its arguments are: {', '.join(names) or '(none)'}"
                    )
        for p in entry.parameters:
            if p.default is p.empty and p.name not in kwargs and p.name not in provided:
                raise RegistryError(f"{entry.kind} {entry.name!r} needs argument {p.name!r}")

    def construct(self, entry: Entry, kwargs: dict[str, Any]) -> Any:
        """Call the component's constructor; its refusal of a value (:func:`~regkit.errors.is_bad_input`)
        names the component, and any other error (a bug) propagates as it is."""
        try:
            return entry.obj(**kwargs)
        except RegkitError:
            raise
        except Exception as err:
            if not is_bad_input(err):
                raise
            raise RegistryError(f"{entry.kind} {entry.name!r}: {err}") from err

    def build(self, name: str, **kwargs: Any) -> Any:
        """Construct ``name`` with ``kwargs``; unknown names and arguments fail naming them."""
        entry = self.get(name)
        self.check_arguments(entry, kwargs)
        return self.construct(entry, kwargs)


def registry_of(kind: str) -> Registry:
    """The registry of ``kind``; an unknown kind fails listing the kinds."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise RegistryError(
            f"unknown kind {kind!r}{did_you_mean(kind, REGISTRIES)}; kinds are: {', '.join(REGISTRIES)}"
        ) from None
