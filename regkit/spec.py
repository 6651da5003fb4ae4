"""Component specs: how a recipe names a registry component and its arguments.

In YAML a component is either its registry name or a mapping with ``name`` plus arguments::

    dropout: dropout                      # defaults
    dropout: {name: dropout, p: 0.3}      # with arguments

A slot in a network or task is typed with the spec class of its kind (``RegularizerSpec``,
``NormSpec``, ...). jsonargparse checks specs while it parses the recipe, so a wrong name or a
wrong argument stops the run before training and the error names the YAML key. A component
is built later, by whoever owns the slot, with ``spec.build(**what_the_slot_provides)``.
"""
from __future__ import annotations

from typing import Any, ClassVar

from jsonargparse import ArgumentParser
from jsonargparse.typing import register_type

from regkit import registry


class Spec:
    """A registry name of a fixed kind plus keyword arguments, checked on creation."""

    kind: ClassVar[str] = ""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = name
        self.kwargs = kwargs

    @classmethod
    def parse(cls, value: Any) -> "Spec":
        """Turn a YAML value (a name, a mapping with ``name``, or a spec) into a checked spec."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise ValueError(
                f"a {cls.kind} is given as its registry name or as a mapping with 'name' and its "
                f"arguments (e.g. {{name: ..., ...}}), not {value!r}"
            )
        kwargs = dict(value)
        name = kwargs.pop("name")
        entry = registry.get(cls.kind, name)
        registry.check_arguments(entry, kwargs, provided=_injected(entry, kwargs))
        spec = cls(name, **_typed_arguments(entry, kwargs))
        if cls.kind in _TRIAL_BUILD_KINDS and not _injected(entry, kwargs):
            spec.build()  # small components: value errors (e.g. p=1.5) surface at parse time, with the key
        return spec

    @property
    def entry(self) -> registry.Entry:
        return registry.get(self.kind, self.name)

    def build(self, **provided: Any) -> Any:
        """Construct the component; ``provided`` fills arguments the slot owner knows."""
        return registry.build(self.kind, self.name, **{**provided, **self.kwargs})

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **{k: _to_config(v) for k, v in self.kwargs.items()}}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_config() == self.to_config()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((self.kind, self.name))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({self.name!r}{args})"


# Kinds cheap enough to construct once while parsing, so their own checks run before training.
_TRIAL_BUILD_KINDS = ("regularizer", "penalty", "constraint", "gan_loss")


def _to_config(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_config()
    if isinstance(value, (list, tuple)):
        return [_to_config(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_config(v) for k, v in value.items()}
    return value


def _injected(entry: registry.Entry, kwargs: dict[str, Any]) -> tuple[str, ...]:
    """Required arguments the recipe leaves out are the slot owner's to fill (e.g. num_features)."""
    return tuple(p.name for p in entry.parameters if p.default is p.empty and p.name not in kwargs)


def _typed_arguments(entry: registry.Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check argument types with jsonargparse, as for any typed signature; nested specs resolve."""
    if not kwargs or entry.accepts_any_kwargs:
        return kwargs
    parser = ArgumentParser(exit_on_error=False)
    skip = set(_injected(entry, kwargs))
    if isinstance(entry.obj, type):
        parser.add_class_arguments(entry.obj, skip=skip, fail_untyped=False, sub_configs=True)
    else:
        parser.add_function_arguments(entry.obj, skip=skip, fail_untyped=False, sub_configs=True)
    try:
        parsed = parser.parse_object(kwargs, defaults=False)
    except Exception as err:  # jsonargparse's message already names the argument
        raise ValueError(f"{entry.kind} {entry.name!r}: {err}") from None
    return {k: _namespace_to_plain(parsed.get(k)) for k in kwargs}


def _namespace_to_plain(value: Any) -> Any:
    if hasattr(value, "as_dict") and not isinstance(value, Spec):
        return value.as_dict()
    return value


class RegularizerSpec(Spec):
    kind = "regularizer"


class NormSpec(Spec):
    kind = "norm"


class PenaltySpec(Spec):
    kind = "penalty"


class ConstraintSpec(Spec):
    kind = "constraint"


class AttentionSpec(Spec):
    kind = "attention"


class GeneratorSpec(Spec):
    kind = "generator"


class DiscriminatorSpec(Spec):
    kind = "discriminator"


class GanLossSpec(Spec):
    kind = "gan_loss"


class NetworkSpec(Spec):
    kind = "network"


SPEC_TYPES: dict[str, type[Spec]] = {cls.kind: cls for cls in Spec.__subclasses__()}
assert set(SPEC_TYPES) == set(registry.KINDS), "every kind needs a spec type"

for _cls in SPEC_TYPES.values():
    register_type(_cls, serializer=Spec.to_config, deserializer=_cls.parse)


def _as_mapping(value: Any) -> dict[str, Any]:
    """A spec's recipe form as a fresh dict: from a Spec, a bare name, a mapping, or nothing."""
    if isinstance(value, Spec):
        return value.to_config()
    if isinstance(value, str):
        return {"name": value}
    return dict(value) if isinstance(value, dict) else {}


def _merge_nested(previous: Any, nested: Any) -> dict[str, Any]:
    """Apply a command-line override of one key (``NestedArg``) to a spec's previous value."""
    base = _as_mapping(previous)
    keys = nested.key.split(".")
    target = base
    for key in keys[:-1]:
        target[key] = _as_mapping(target.get(key))
        target = target[key]
    target[keys[-1]] = nested.val
    return base


def _install_override_merging() -> None:
    """jsonargparse hands a registered type a ``NestedArg`` for ``--x.spec.key value`` without the
    previous value; merge it here so single arguments of a component can be overridden."""
    from jsonargparse import _typehints

    original = _typehints.adapt_typehints
    if getattr(original, "_regkit", False):
        return

    def adapt_typehints(val: Any, typehint: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(val, _typehints.NestedArg) and isinstance(typehint, type) and issubclass(typehint, Spec):
            val = _merge_nested(kwargs.get("prev_val"), val)
        return original(val, typehint, *args, **kwargs)

    adapt_typehints._regkit = True  # type: ignore[attr-defined]
    _typehints.adapt_typehints = adapt_typehints


_install_override_merging()
