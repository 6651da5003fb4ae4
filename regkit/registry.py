"""The component registry: every pluggable part of regkit, found by ``(kind, name)``.

Built-in components register when first asked for. Installed plugins declare entry points in
the group ``regkit.plugins``; they are read as metadata and imported only when needed:

* an entry point named ``KIND.NAME`` (e.g. ``regularizer.concrete_dropout =
  "regkit_concrete_dropout:ConcreteDropout"``) is known by name without importing anything;
  its module is imported the first time that component is built, listed with its arguments,
  or named in a recipe. If the module does not register the name itself, the object the entry
  point names is registered under it;
* any other entry point (e.g. ``my_plugin = "my_plugin"``) is a module or a function that
  registers components; it is imported when a name is not found among the known ones, or when
  everything is listed.

A plugin that fails to import is reported by name with its error (``plugin_errors``, ``regkit
list``) and everything else keeps working.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

KINDS = (
    "regularizer",
    "norm",
    "penalty",
    "constraint",
    "attention",
    "generator",
    "discriminator",
    "gan_loss",
    "network",
)

# Modules whose import registers regkit's own components. A new built-in module goes here.
BUILTIN_MODULES = (
    "regkit.regularizers",
    "regkit.norm",
    "regkit.penalties",
    "regkit.activation_penalties",
    "regkit.constraints",
    "regkit.attention",
    "regkit.gan",
    "regkit.networks",
)

ENTRY_POINT_GROUP = "regkit.plugins"


class RegistryError(ValueError):
    """A component could not be registered, found or built."""


@dataclass(frozen=True)
class Entry:
    """One registered component: what it is called and where it came from."""

    kind: str
    name: str
    obj: Callable[..., Any]
    module: str
    dist: str | None = None  # the installed distribution, when it came from an entry point

    @property
    def doc(self) -> str:
        """The summary of the component's docstring: its first paragraph, on one line."""
        doc = (inspect.getdoc(self.obj) or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @property
    def parameters(self) -> list[inspect.Parameter]:
        params = inspect.signature(self.obj).parameters.values()
        return [p for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @property
    def accepts_any_kwargs(self) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.obj).parameters.values())

    @property
    def origin(self) -> str:
        """The installed distribution that provides the component, else its module or file."""
        if self.dist:
            return self.dist
        top = self.module.split(".")[0]
        dists = _packages_distributions().get(top)
        if dists:
            return dists[0]
        mod = sys.modules.get(self.module)
        path = getattr(mod, "__file__", None)
        return path if path and self.module.startswith(_LOCAL_PREFIX) else self.module

    def describe_arguments(self) -> list[dict[str, str]]:
        out = []
        for p in self.parameters:
            ann = p.annotation
            type_name = "" if ann is p.empty else (ann if isinstance(ann, str) else _type_name(ann))
            default = "" if p.default is p.empty else repr(p.default)
            out.append({"name": p.name, "type": type_name, "default": default})
        return out


    @property
    def version(self) -> str:
        """Version of the distribution in :attr:`origin` ("" for a local file or module)."""
        try:
            return importlib.metadata.version(self.origin)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            return ""


_LOCAL_PREFIX = "regkit_local_plugin_"
_entries: dict[tuple[str, str], Entry] = {}
_builtins_loaded = False
_plugins_loaded = False
# Failures by entry-point name: "<distribution> (<module:attr>): <Error>: <message>".
plugin_errors: dict[str, str] = {}
_entry_points: tuple[dict[tuple[str, str], Any], list[Any]] | None = None
_attempted: set[str] = set()  # entry points already imported (or tried)
_loading_dist: str | None = None  # the distribution whose entry point is being imported


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


_dists_cache: dict[str, list[str]] | None = None


def _packages_distributions() -> dict[str, list[str]]:
    global _dists_cache
    if _dists_cache is None:
        _dists_cache = dict(importlib.metadata.packages_distributions())
    return _dists_cache


def snake_case(name: str) -> str:
    """``GhostBatchNorm`` -> ``ghost_batch_norm``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown kind {kind!r}{_did_you_mean(kind, KINDS)}; kinds are: {', '.join(KINDS)}")


def _did_you_mean(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def register(kind: str, name: str | None = None, override: bool = False) -> Callable[[Any], Any]:
    """Class or function decorator that registers a component under ``(kind, name)``.

    ``name`` defaults to the snake_case form of the object's name. Registering an existing
    ``(kind, name)`` again raises unless ``override=True``.
    """
    _check_kind(kind)

    def decorator(obj: Any) -> Any:
        key = (kind, name or snake_case(obj.__name__))
        if key in _entries and not override:
            old = _entries[key]
            if old.obj is obj:  # the same object imported twice (e.g. a module re-run): harmless
                return obj
            raise RegistryError(
                f"{kind} {key[1]!r} is already registered (from {old.module}); "
                "pass override=True to replace it"
            )
        _entries[key] = Entry(kind, key[1], obj, getattr(obj, "__module__", "?"), _loading_dist)
        return obj

    return decorator


def unregister(kind: str, name: str) -> None:
    """Remove a component (tests and interactive sessions use this)."""
    _entries.pop((kind, name), None)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def _plugin_entry_points() -> tuple[dict[tuple[str, str], Any], list[Any]]:
    """Entry points of ``regkit.plugins`` (metadata only, read once): ``KIND.NAME`` ones by key,
    and the others."""
    global _entry_points
    if _entry_points is None:
        named: dict[tuple[str, str], Any] = {}
        other: list[Any] = []
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            kind, dot, name = ep.name.partition(".")
            if dot and kind in KINDS and name:
                named.setdefault((kind, name), ep)
            else:
                other.append(ep)
        _entry_points = (named, other)
    return _entry_points


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.split(":")[0].split(".")[0]


def _load_entry_point(ep: Any, key: tuple[str, str] | None = None) -> bool:
    """Import one entry point (once); record and warn on failure instead of raising."""
    global _loading_dist
    if ep.name in _attempted:
        return ep.name not in plugin_errors
    _attempted.add(ep.name)
    dist = _dist_name(ep)
    previous, _loading_dist = _loading_dist, dist
    try:
        loaded = ep.load()
        if key is not None:
            if key not in _entries and not inspect.ismodule(loaded):
                register(*key)(loaded)  # the entry point names the component itself
            if key not in _entries:
                raise RegistryError(f"importing {ep.value} did not register {key[0]} {key[1]!r}")
        elif callable(loaded) and not isinstance(loaded, type):
            loaded()  # a function that registers components
    except Exception as err:  # a broken plugin must not break the others
        plugin_errors[ep.name] = f"{dist} ({ep.value}): {type(err).__name__}: {err}"
        warnings.warn(f"regkit plugin {ep.name!r} from {dist} failed to load: {err}", stacklevel=3)
        return False
    finally:
        _loading_dist = previous
    return True


def _load_other_plugins() -> None:
    """Import the entry points that are not named ``KIND.NAME`` (their names are unknown)."""
    for ep in _plugin_entry_points()[1]:
        _load_entry_point(ep)


def load_plugins() -> dict[str, str]:
    """Import every installed ``regkit.plugins`` entry point once; returns the failures by name."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        _load_builtins()
        named, _ = _plugin_entry_points()
        for key, ep in named.items():
            _load_entry_point(ep, key)
        _load_other_plugins()
    return plugin_errors


def plugin_components(kind: str | None = None) -> dict[tuple[str, str], str]:
    """``KIND.NAME`` entry points known from metadata (nothing imported): key -> distribution."""
    named, _ = _plugin_entry_points()
    return {key: _dist_name(ep) for key, ep in named.items() if kind is None or key[0] == kind}


def load_module(target: str) -> None:
    """Register the components in a local ``.py`` file or an importable module name."""
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise RegistryError(f"plugin file not found: {target}")
        module_name = _LOCAL_PREFIX + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(target)


def get(kind: str, name: str) -> Entry:
    """The registry entry for ``(kind, name)``; unknown names fail listing close matches."""
    _check_kind(kind)
    _load_builtins()
    key = (kind, name)
    entry = _entries.get(key)
    if entry is None:
        ep = _plugin_entry_points()[0].get(key)
        if ep is not None:  # a plugin declared this very name: import only that plugin
            if not _load_entry_point(ep, key):
                raise RegistryError(f"{kind} {name!r} is provided by plugin {plugin_errors[ep.name]}")
        else:
            _load_other_plugins()
        entry = _entries.get(key)
    if entry is None:
        names = available(kind)
        hint = _did_you_mean(name, names)
        if not hint:
            hint = f"; available: {', '.join(names) or '(none)'}"
        raise RegistryError(f"unknown {kind} {name!r}{hint}")
    return entry


def available(kind: str | None = None, pattern: str = "*") -> list[str] | dict[str, list[str]]:
    """Registered names of ``kind`` (sorted), or a ``{kind: names}`` dict when ``kind`` is None.

    ``pattern`` is a shell wildcard, e.g. ``available("regularizer", "*drop*")``. Names that
    installed plugins declare as ``KIND.NAME`` entry points are included without importing them.
    """
    _load_builtins()
    _load_other_plugins()
    if kind is None:
        return {k: available(k, pattern) for k in KINDS}  # type: ignore[misc]
    _check_kind(kind)
    names = {n for (k, n) in _entries if k == kind} | {n for (k, n) in plugin_components(kind)}
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def entries(kind: str | None = None, pattern: str = "*") -> list[Entry]:
    """Registry entries, sorted by kind then name; imports only the plugins that can match."""
    _load_builtins()
    kinds = KINDS if kind is None else (kind,)
    for k in kinds:
        _check_kind(k)
    for key, ep in _plugin_entry_points()[0].items():
        if key[0] in kinds and fnmatch.fnmatch(key[1], pattern) and key not in _entries:
            _load_entry_point(ep, key)
    _load_other_plugins()
    return sorted(
        (e for e in _entries.values() if e.kind in kinds and fnmatch.fnmatch(e.name, pattern)),
        key=lambda e: (KINDS.index(e.kind), e.name),
    )


def check_arguments(entry: Entry, kwargs: dict[str, Any], provided: tuple[str, ...] = ()) -> None:
    """Raise if ``kwargs`` names an argument the component does not take.

    ``provided`` lists arguments the caller fills in itself (e.g. ``num_features`` for a norm).
    """
    names = [p.name for p in entry.parameters]
    if not entry.accepts_any_kwargs:
        for key in kwargs:
            if key not in names:
                raise RegistryError(
                    f"{entry.kind} {entry.name!r} has no argument {key!r}{_did_you_mean(key, names)}"
                    f"; its arguments are: {', '.join(names) or '(none)'}"
                )
    for p in entry.parameters:
        if p.default is p.empty and p.name not in kwargs and p.name not in provided:
            raise RegistryError(f"{entry.kind} {entry.name!r} needs argument {p.name!r}")


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Construct the component ``(kind, name)`` with ``kwargs``.

    Unknown names fail with close matches; unknown or missing arguments fail naming the
    argument and the component.
    """
    entry = get(kind, name)
    check_arguments(entry, kwargs)
    try:
        return entry.obj(**kwargs)
    except (ValueError, TypeError) as err:
        raise RegistryError(f"{kind} {name!r}: {err}") from err
