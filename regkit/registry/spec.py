"""Component specs: how a recipe names a registry component and its arguments.

In YAML a component is either its registry name or a mapping with ``name`` plus arguments::

    dropout: dropout                      # defaults
    dropout: {name: dropout, p: 0.3}      # with arguments

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

import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar, Union

from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import register_type

from regkit.errors import RegkitError, first_raised, is_bad_input

if TYPE_CHECKING:
    from regkit.registry.core import Entry, Registry


S = TypeVar("S", bound="Spec")


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

    def __init__(self, name: str, **kwargs: Any) -> None:
        entry = self.registry.get(name)
        self.registry.check_arguments(entry, kwargs, provided=_injected(entry, kwargs))
        self.name = name
        self.kwargs = _typed_arguments(entry, kwargs)
        self.entry: "Entry" = entry
        if self.registry.trial_build and not _injected(entry, kwargs):
            self.registry.construct(entry, dict(self.kwargs))  # its own value checks (e.g. p=1.5), now

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
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise RegkitError(
                f"a {cls.kind} is given as its registry name or as a mapping with 'name' and its "
                f"arguments (e.g. {{name: ..., ...}}), not {value!r}"
            )
        kwargs = dict(value)
        return cls(kwargs.pop("name"), **kwargs)

    def build(self, **provided: Any) -> Any:
        """Construct the component; ``provided`` fills arguments the slot owner knows."""
        kwargs = {**provided, **self.kwargs}
        self.registry.check_arguments(self.entry, kwargs)
        return self.registry.construct(self.entry, kwargs)

    def fill(self, **known: Any) -> Any:
        """Build it in a slot: of what the slot knows (e.g. ``num_features``), pass only what the
        component accepts (everything, if it takes ``**kwargs``)."""
        if not self.entry.accepts_any_kwargs:
            accepted = {p.name for p in self.entry.parameters}
            known = {k: v for k, v in known.items() if k in accepted}
        return self.build(**known)

    def to_config(self) -> dict[str, Any]:
        """The recipe form: plain values only (what checkpoints store; loads with ``weights_only``)."""
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
    parser = _argument_parser(entry.obj, frozenset(_injected(entry, kwargs)))
    checked: dict[str, Any] = {}
    for key, value in kwargs.items():  # one by one, so an error names its argument
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
