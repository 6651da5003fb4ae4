"""Component specs: how a recipe names a registry component and its arguments.

In YAML a component is either its registry name or a mapping with ``name`` plus arguments, or
any importable class or factory with its arguments, as LightningCLI names classes::

    dropout: dropout                      # defaults
    dropout: {name: dropout, p: 0.3}      # with arguments
    network:                              # a model regkit did not build
      class_path: timm.create_model
      init_args: {model_name: resnet18, num_classes: 10, in_chans: 1}

A slot in a network or task is typed with the spec type of its kind (``RegularizerSpec``,
``NormSpec``, ...: ``regkit.registry.RegularizerSpec``, a ``Spec`` subclass bound to its kind's
:class:`~regkit.registry.Registry`; :func:`spec_type` makes one for a kind created at run time).
A spec resolves once, when it is created: the name is looked up, the arguments are checked
(names, types, nested specs) and, for small kinds, the component is built once so its own checks
run. It keeps the registry entry and plain recipe values, so ``spec.to_config()`` is what a
checkpoint stores and ``spec.build(**what_the_slot_provides)`` constructs the component with no
second lookup.

jsonargparse (public ``register_type``) turns recipe values into specs while it parses. A value
that does not resolve is kept as an :class:`InvalidSpec` holding regkit's own error, so the CLI
reports it with its full key (``model.init_args.network.dropout: unknown regularizer ...``); a
component whose constructor has a bug is kept with that error, which the CLI raises as it is (with
its traceback) instead of letting jsonargparse report it as a value that does not fit.
"""
from __future__ import annotations

import copy
import functools
import importlib
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, TypeVar, Union

from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import register_type

from regkit.errors import RegkitError, first_raised, is_bad_input
from regkit.registry.core import REGISTRIES, Entry, did_you_mean

if TYPE_CHECKING:
    from regkit.registry.core import Registry


S = TypeVar("S", bound="Spec")
# Kinds whose numeric arguments may be schedules ({schedule: linear, ...}, regkit/components/schedules.py),
# and the attribute of a built component that holds them: {argument: Schedule}.
SCHEDULED_KINDS = ("regularizer", "penalty", "constraint")
SCHEDULES = "regkit_schedules"


class Spec:
    """A registry name of a fixed kind plus its checked keyword arguments.

    ``Spec(name, **kwargs)`` resolves on creation and raises :class:`~regkit.errors.RegkitError`
    (keyed by the argument at fault, if any) when the name or an argument is wrong.
    """

    registry: ClassVar["Registry"]
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, registry: "Registry | None" = None, **kwargs: Any) -> None:
        """``class RegularizerSpec(Spec, registry=regularizer)``: the spec type of that kind."""
        super().__init_subclass__(**kwargs)
        if registry is not None:
            cls.registry, cls.kind = registry, registry.kind
            registry.Spec = cls
            register_spec_type(cls)

    class_path: Optional[str] = None  # set when the component is an imported class, not a registry name

    def __init__(self, name: str, **kwargs: Any) -> None:
        self._resolve(name, self.registry.get(name), kwargs)

    def _resolve(self, name: str, entry: Entry, kwargs: dict[str, Any]) -> None:
        self.registry.check_arguments(entry, kwargs, provided=_injected(entry, kwargs))
        self.name = name
        schedules = self._schedules(kwargs)
        first = {k: s.build().initial() for k, s in schedules.items()}
        self.kwargs = {**_typed_arguments(entry, {**kwargs, **first}), **schedules}
        self.entry: Entry = entry
        if self.registry.trial_build and not _injected(entry, kwargs):
            for key, spec in schedules.items():  # its own value checks for every value a schedule takes ...
                for value in spec.build().values():
                    try:
                        self.registry.construct(entry, instantiate({**self._values(), key: value}))
                    except RegkitError as err:
                        raise RegkitError(f"the schedule takes the value {value!r}: {err.message}", key) from err
            self.registry.construct(entry, instantiate(self._values()))  # ... and for the rest (e.g. p=1.5), now

    def _schedules(self, kwargs: dict[str, Any]) -> dict[str, "Spec"]:
        """The arguments given as schedules ({schedule: linear, ...}), as schedule specs."""
        found = {k: v for k, v in kwargs.items()
                 if isinstance(v, dict) and "schedule" in v or getattr(v, "kind", None) == "schedule"}
        if found and self.kind not in SCHEDULED_KINDS:
            raise RegkitError(f"a {self.kind}'s arguments cannot be schedules (those of a "
                              f"{', '.join(SCHEDULED_KINDS)} can)", next(iter(found)))
        specs = {}
        for key, value in found.items():
            try:
                specs[key] = REGISTRIES["schedule"].Spec.parse(value)
                specs[key].build()  # a schedule has no argument a slot fills in: all of them now
            except RegkitError as err:
                raise err.under(key) from err.__cause__
        return specs

    def _values(self, **provided: Any) -> dict[str, Any]:
        """The constructor's arguments: a scheduled one at its first value."""
        return {**provided, **{k: v.build().initial() if getattr(v, "kind", None) == "schedule" and isinstance(v, Spec)
                               else v for k, v in self.kwargs.items()}}

    @classmethod
    def imported(cls: type[S], class_path: str, init_args: Optional[dict[str, Any]] = None) -> S:
        """The spec of any importable class or factory: ``class_path`` (``timm.create_model``,
        ``my_pkg.MyNet``) called with ``init_args``; nested ``{class_path, init_args}`` values are
        built too. Checked like a registry component (argument names and types)."""
        if not isinstance(init_args, (dict, type(None))):
            raise RegkitError(f"init_args must be a mapping of arguments, not {init_args!r}", "init_args")
        obj = import_object(class_path)
        if not callable(obj):
            raise RegkitError(f"{class_path!r} is not a class or function", "class_path")
        spec = cls.__new__(cls)
        spec.class_path = class_path
        entry = Entry(cls.kind, class_path, obj, getattr(obj, "__module__", "?"))
        try:
            spec._resolve(class_path, entry, dict(init_args or {}))
        except RegkitError as err:
            raise err.under("init_args") from err.__cause__
        return spec

    @classmethod
    def parse(cls: type[S], value: Any) -> S:
        """A spec from a YAML value: a name, a mapping with ``name``, or a spec of this kind."""
        if isinstance(value, cls):
            return value
        if isinstance(value, InvalidSpec):
            raise value.error_under("")
        if isinstance(value, str):
            value = {"name": value}
        if hasattr(value, "as_dict"):  # a jsonargparse Namespace
            value = value.as_dict()
        if isinstance(value, dict) and "class_path" in value and "name" not in value:
            extra = sorted(set(value) - {"class_path", "init_args"})
            if extra:
                raise RegkitError(f"a class is given as class_path and init_args; unexpected key {extra[0]!r}", extra[0])
            if not isinstance(value["class_path"], str):
                raise RegkitError(f"class_path must be an import path (module.Name), not {value['class_path']!r}",
                                  "class_path")
            return cls.imported(value["class_path"], value.get("init_args"))
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise RegkitError(
                f"a {cls.kind} is given as its registry name, as a mapping with 'name' and its arguments "
                f"(e.g. {{name: ..., ...}}) or as class_path and init_args, not {value!r}"
            )
        kwargs = dict(value)
        return cls(kwargs.pop("name"), **kwargs)

    def build(self, **provided: Any) -> Any:
        """Construct the component; ``provided`` fills arguments the slot owner knows. Scheduled
        arguments start at their first value and the component keeps the schedules (``regkit_schedules``)."""
        kwargs = self._values(**provided)
        self.registry.check_arguments(self.entry, kwargs)
        built = self.registry.construct(self.entry, instantiate(kwargs) if self.class_path else kwargs)
        schedules = {k: v.build() for k, v in self.kwargs.items() if isinstance(v, Spec) and v.kind == "schedule"}
        if schedules:
            setattr(built, SCHEDULES, {**(getattr(built, SCHEDULES, None) or {}), **schedules})
        return built

    def fill(self, **known: Any) -> Any:
        """Build it in a slot: of what the slot knows (e.g. ``num_features``), pass only what the
        component accepts (everything, if it takes ``**kwargs``)."""
        if not self.entry.accepts_any_kwargs:
            accepted = {p.name for p in self.entry.parameters}
            known = {k: v for k, v in known.items() if k in accepted}
        return self.build(**known)

    def with_arguments(self: S, **kwargs: Any) -> S:
        """The same component with some arguments changed (already-checked values, e.g. a rate
        scaled by depth); the name is not looked up again."""
        changed = copy.copy(self)
        changed.kwargs = {**self.kwargs, **kwargs}
        return changed

    def to_config(self) -> dict[str, Any]:
        """The recipe form: plain values only (what checkpoints store; loads with ``weights_only``)."""
        if self.class_path:
            return {"class_path": self.class_path, "init_args": {k: to_config(v) for k, v in self.kwargs.items()}}
        return {"name": self.name, **{k: to_config(v) for k, v in self.kwargs.items()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and other.kind == self.kind and other.to_config() == self.to_config()

    def __hash__(self) -> int:
        return hash((self.kind, self.name))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({self.name!r}{args})"


class InvalidSpec:
    """A recipe value that did not resolve, kept with regkit's error until the CLI reports it (or
    with the error of a constructor's bug, which :meth:`error_under` raises as it is)."""

    def __init__(self, spec_type: type[Spec], value: Any, error: Exception) -> None:
        self.spec_type, self.value, self.error = spec_type, value, error

    def error_under(self, key: str) -> RegkitError:
        """regkit's error with ``key`` in front of its key; a bug's error is raised instead."""
        if not isinstance(self.error, RegkitError):
            raise self.error
        return self.error.under(key)

    def __repr__(self) -> str:
        return f"InvalidSpec({self.value!r}: {self.error})"


def import_object(path: str, key: str = "class_path") -> Any:
    """The object an import path names (``timm.create_model``); a :class:`RegkitError` keyed ``key``
    says what is missing (the module, or the name in it, with close matches)."""
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise RegkitError(f"{path!r} is not an import path (module.Name)", key)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name.split(".")[0]) and module_name.split(".")[0] == err.name.split(".")[0]:
            raise RegkitError(f"cannot import {path!r}: no module named {err.name!r} (is it installed?)", key) from None
        raise RegkitError(f"cannot import {path!r}: {err}", key) from None
    except ImportError as err:
        raise RegkitError(f"cannot import {path!r}: {err}", key) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise RegkitError(f"cannot import {path!r}: {module_name} has no {attr!r}{did_you_mean(attr, names)}", key) from None


def instantiate(value: Any) -> Any:
    """``value`` with every nested ``{class_path, init_args}`` mapping built (as LightningCLI does)."""
    if isinstance(value, dict):
        if isinstance(value.get("class_path"), str) and set(value) <= {"class_path", "init_args"}:
            return import_object(value["class_path"])(**instantiate(dict(value.get("init_args") or {})))
        return {k: instantiate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [instantiate(v) for v in value]
    return value


def to_config(value: Any) -> Any:
    """Specs (also inside lists and dicts) to their plain recipe form."""
    if isinstance(value, Spec):
        return value.to_config()
    if isinstance(value, InvalidSpec):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_config(v) for v in value]
    if isinstance(value, dict):
        return {k: to_config(v) for k, v in value.items()}
    return value


def _injected(entry: "Entry", kwargs: dict[str, Any]) -> tuple[str, ...]:
    """Required arguments the recipe leaves out are the slot owner's to fill (e.g. num_features)."""
    return tuple(p.name for p in entry.parameters if p.default is p.empty and p.name not in kwargs)


@functools.lru_cache(maxsize=None)
def _argument_parser(component: Callable[..., Any], skip: frozenset[str]) -> ArgumentParser:
    """The parser of a component's typed arguments (less ``skip``), made once per component: every
    spec of it in every parse reuses it (building one costs as much as parsing with it)."""
    parser = ArgumentParser(exit_on_error=False)
    skipped = set[Union[str, int]](skip)
    if isinstance(component, type):
        parser.add_class_arguments(component, skip=skipped, fail_untyped=False, sub_configs=True)
    else:
        parser.add_function_arguments(component, skip=skipped, fail_untyped=False, sub_configs=True)
    return parser


def _one_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _typed_arguments(entry: "Entry", kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check argument types as for any typed signature; nested specs resolve (errors keyed by argument)."""
    if not kwargs or entry.accepts_any_kwargs:
        return kwargs
    required = {p.name for p in entry.parameters if p.default is p.empty}
    checked: dict[str, Any] = {}
    for key, value in kwargs.items():  # one by one, so an error names its argument
        if isinstance(value, dict) and "class_path" in value:
            checked[key] = value  # an object to build (a Hugging Face config): checked when it is built
            continue
        # the other required arguments are left out of this key's parser (given ones are checked in turn)
        parser = _argument_parser(entry.obj, frozenset(required - {key}))
        try:
            parsed = parser.parse_object({key: value}, defaults=False)
        except ArgumentError as err:  # jsonargparse's own type check
            if not is_bad_input(err, parsing=True):
                raise first_raised(err) from None  # a bug, not the value
            raise RegkitError(f"{entry.kind} {entry.name!r}: {_one_line(err)}", key) from None
        value = parsed.get(key)
        if hasattr(value, "as_dict"):
            value = value.as_dict()
        for inner_key, inner in _nested_values(key, value):
            if isinstance(inner, InvalidSpec):
                raise inner.error_under(inner_key)
        checked[key] = value
    return checked


def _nested_values(key: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, (list, tuple)):
        return [(f"{key}.{i}", v) for i, v in enumerate(value)]
    return [(key, value)]


# ---------------------------------------------------------------------- jsonargparse type
def _serialize(value: Any) -> Any:
    return to_config(value)


def _is_nested_override(value: Any) -> bool:
    """``--x.spec.key value`` reaches a registered type as a (key, val) named tuple."""
    return isinstance(value, tuple) and hasattr(value, "key") and hasattr(value, "val")


def spec_type(registry: "Registry") -> type[Spec]:
    """The spec type of a kind made at run time (``MyKindSpec`` for ``Registry("my_kind")``)."""
    name = "".join(word.capitalize() for word in registry.kind.split("_")) + "Spec"
    doc = f"A {registry.kind} chosen by a recipe: its registry name and arguments."
    return type(name, (Spec,), {"__doc__": doc}, registry=registry)


def register_spec_type(cls: type[Spec]) -> None:
    """Make jsonargparse (public ``register_type``) parse recipe values into ``cls`` in any signature
    it annotates; a value that does not resolve becomes an :class:`InvalidSpec` with the error."""
    kind = cls.kind

    def deserialize(value: Any) -> Any:
        if _is_nested_override(value):
            error = RegkitError(
                f"cannot set {value.key!r} of a {kind} that is not there (the slot is empty); give the "
                f"whole {kind}, its name and arguments (e.g. {{name: ..., {value.key}: ...}})"
            )
            return InvalidSpec(cls, {value.key: value.val}, error)
        if not isinstance(value, (str, dict)) and not hasattr(value, "as_dict"):
            raise ValueError(f"a {kind} is given as its registry name or a mapping with 'name', not {value!r}")
        try:
            return cls.parse(value)
        except Exception as err:  # reported by the CLI with its full key, a bug raised as it is
            return InvalidSpec(cls, to_config(value), err)

    register_type(
        cls,
        serializer=_serialize,
        deserializer=deserialize,
        type_check=lambda v, t: isinstance(v, t) or (isinstance(v, InvalidSpec) and v.spec_type is t),
    )


def invalid_specs(value: Any, key: str = "") -> list[tuple[str, InvalidSpec]]:
    """Every :class:`InvalidSpec` inside a parsed config, with its dotted key."""
    found: list[tuple[str, InvalidSpec]] = []
    if isinstance(value, InvalidSpec):
        found.append((key, value))
    elif hasattr(value, "items") and not isinstance(value, Spec):
        for k, v in value.items():
            found += invalid_specs(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += invalid_specs(v, f"{key}.{i}")
    return found
