"""A rule: which modules (or parameters) of a built model it selects, and the one thing it does there.

In YAML (the ``regularize:`` key of every task, or ``regkit.callbacks.Regularize(rules=...)``)::

    regularize:
      - type: torch.nn.Dropout                       # every nn.Dropout ...
        replace: {name: variational_dropout}         # ... becomes locked dropout
        layout: sequence                             # (N, T, C) tensors there
      - path: "layer[34].*"                          # a glob on qualified module names
        type: torch.nn.Conv2d
        insert: {name: drop_block, p: 0.1, block_size: 3}   # after each match (where: before)
      - type: timm.layers.DropPath
        set: {drop_prob: 0.1}
        depth: linear                                # block l of L gets 0.1 * l / L
      - params: "*.weight"                           # a glob on parameter names
        penalty: {name: l2, strength: 1.0e-4}

A rule selects modules by ``path`` (a shell pattern on ``model.named_modules()`` names), by
``type`` (an import path or a list of them; subclasses match; a bare name is looked up in
``torch.nn``), or both, and does exactly one of ``insert``, ``replace``, ``set``, ``wrap``; or it
selects parameters by ``params`` and attaches one ``penalty`` or ``constraint``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from regkit.components.layouts import FEATURES, MAPS, SEQUENCE, Layout
from regkit.errors import RegkitError
from regkit.registry import REGISTRIES, ConstraintSpec, PenaltySpec, RegularizerSpec, ScheduleSpec, Spec, did_you_mean
from regkit.registry.spec import import_object, to_config

MODULE_ACTIONS = ("insert", "replace", "set", "wrap")
PARAMETER_ACTIONS = ("penalty", "constraint")
LAYOUTS = {layout.name: layout for layout in (FEATURES, MAPS, SEQUENCE)}
DEPTH_RULES = ("linear",)
# The kinds whose components can be inserted into, or replace, a module: layers.
LAYER_KINDS = ("regularizer", "norm", "attention")

FIELDS: dict[str, str] = {
    "path": "shell pattern on qualified module names (blocks.*.mlp.fc2); '' is the model itself",
    "type": "import path of a module class, or a list (torch.nn.Linear, timm.layers.Mlp); bare names are torch.nn's",
    "insert": "a regularizer/norm/attention component to run on each match's output (or input, with where: before)",
    "where": "after (default) or before: where insert runs",
    "replace": "a component that replaces each match; arguments it shares with the old module (p, num_features, ...) are taken from it, and its state when the keys agree",
    "set": "mapping of attribute -> value set on each match (p: 0.2, drop_prob: 0.1); a value may be a schedule",
    "wrap": "a weight regularizer (weight_drop) applied to each match's parameters as a parametrization",
    "params": "shell pattern on parameter names, for penalty and constraint (*.weight)",
    "penalty": "a penalty on the parameters that params selects (l1, l2)",
    "constraint": "a constraint on the parameters that params selects (max_norm, spectral_norm)",
    "layout": "features, maps or sequence: the layout of the tensors at the matches, where regkit cannot tell",
    "depth": "linear: spread the rate over the matches in order, match l of L getting rate * l / L",
}


def layer_spec(value: Any, key: str) -> Spec:
    """A layer component of whichever kind has the name (``dropout`` -> regularizer,
    ``ghost_batch_norm`` -> norm), or an imported class; ``kind:`` picks one when names clash."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise RegkitError(f"a component is given as its registry name or a mapping with 'name', not {value!r}", key)
    value = dict(value)
    kind = value.pop("kind", None)
    try:
        if "class_path" in value:
            return REGISTRIES[kind or "regularizer"].Spec.parse(value)
        name = value.get("name")
        kinds = [kind] if kind else [k for k in LAYER_KINDS if isinstance(name, str) and name in REGISTRIES[k].names()]
        if kind is not None and kind not in LAYER_KINDS:
            raise RegkitError(f"kind must be one of {', '.join(LAYER_KINDS)}, not {kind!r}", "kind")
        if len(kinds) > 1:
            raise RegkitError(f"{name!r} is a {' and a '.join(kinds)}; add kind: {kinds[0]} (or {kinds[1]})", "kind")
        if not kinds:
            names = sorted({n for k in LAYER_KINDS for n in REGISTRIES[k].names()})
            raise RegkitError(f"unknown component {name!r}{did_you_mean(str(name), names)}; layers are: "
                              f"{', '.join(names)}", "name")
        return REGISTRIES[kinds[0]].Spec.parse(value)
    except RegkitError as err:
        raise err.under(key) from err.__cause__


def module_type(path: str, key: str) -> type:
    """The class an import path names; a bare name is a ``torch.nn`` class."""
    if not isinstance(path, str):
        raise RegkitError(f"a type is given as an import path (torch.nn.Linear), not {path!r}", key)
    if "." not in path:
        names = [n for n in dir(nn) if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), nn.Module)]
        if path not in names:
            raise RegkitError(f"torch.nn has no module class {path!r}{did_you_mean(path, names)}; give the import "
                              "path of a class elsewhere (timm.layers.Mlp)", key)
        return getattr(nn, path)
    obj = import_object(path, key)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise RegkitError(f"{path!r} is not a torch.nn.Module class", key)
    return obj


@dataclass
class Rule:
    """One parsed rule (see the module docstring); ``key`` is where it stands (``regularize.2``),
    so every error names it."""

    key: str
    path: Optional[str] = None
    types: tuple[type, ...] = ()
    type_names: list[str] = field(default_factory=list)
    action: str = ""
    component: Optional[Spec] = None
    values: dict[str, Any] = field(default_factory=dict)  # the `set` action's attributes (a Schedule for a schedule)
    schedule_configs: dict[str, Any] = field(default_factory=dict)  # their recipe form
    where: str = "after"
    params: Optional[str] = None
    layout: Optional[Layout] = None
    depth: Optional[str] = None

    @classmethod
    def parse(cls, value: Any, key: str) -> "Rule":
        """A rule from its YAML mapping; a :class:`RegkitError` keyed ``key.<field>`` says what is wrong."""
        if isinstance(value, Rule):
            return value
        if hasattr(value, "as_dict"):
            value = value.as_dict()
        if not isinstance(value, dict):
            raise RegkitError(f"a rule is a mapping ({', '.join(FIELDS)}), not {value!r}", key)
        for name in value:
            if name not in FIELDS:
                raise RegkitError(f"a rule has no key {name!r}{did_you_mean(str(name), FIELDS)}; its keys are: "
                                  f"{', '.join(FIELDS)}", f"{key}.{name}")
        actions = [a for a in (*MODULE_ACTIONS, *PARAMETER_ACTIONS) if value.get(a) is not None]
        if len(actions) != 1:
            what = "none" if not actions else " and ".join(actions)
            raise RegkitError(f"a rule does exactly one of {', '.join(MODULE_ACTIONS + PARAMETER_ACTIONS)}; "
                              f"this one has {what}", key)
        rule = cls(key=key, action=actions[0])
        where = f"{key}.{rule.action}"
        if rule.action in PARAMETER_ACTIONS:
            for name in ("path", "type", "where", "layout", "depth"):
                if value.get(name) is not None:
                    raise RegkitError(f"a {rule.action} rule selects parameters with params, not {name}",
                                      f"{key}.{name}")
            rule.params = value.get("params") or "*"
            if not isinstance(rule.params, str):
                raise RegkitError(f"params is a shell pattern on parameter names, not {rule.params!r}", f"{key}.params")
            spec_type = PenaltySpec if rule.action == "penalty" else ConstraintSpec
            try:
                rule.component = spec_type.parse(_with_include(value[rule.action], rule.params, spec_type))
            except RegkitError as err:
                raise err.under(where) from err.__cause__
            return rule
        if value.get("params") is not None:
            raise RegkitError("params selects parameters for penalty and constraint rules; select modules with "
                              "path and type", f"{key}.params")
        if value.get("path") is None and value.get("type") is None:
            raise RegkitError("a rule selects modules with path, type or both", key)
        rule.path = value.get("path")
        if rule.path is not None and not isinstance(rule.path, str):
            raise RegkitError(f"path is a shell pattern on module names, not {rule.path!r}", f"{key}.path")
        types = value.get("type")
        rule.type_names = [] if types is None else list(types) if isinstance(types, (list, tuple)) else [types]
        rule.types = tuple(module_type(t, f"{key}.type") for t in rule.type_names)
        rule.where = value.get("where") or "after"
        if rule.where not in ("after", "before") or (rule.action != "insert" and value.get("where") is not None):
            raise RegkitError(f"where is after or before, for insert only; got {value.get('where')!r}", f"{key}.where")
        if value.get("layout") is not None:
            if value["layout"] not in LAYOUTS:
                raise RegkitError(f"layout is one of {', '.join(LAYOUTS)}, not {value['layout']!r}"
                                  f"{did_you_mean(str(value['layout']), LAYOUTS)}", f"{key}.layout")
            rule.layout = LAYOUTS[value["layout"]]
        rule.depth = value.get("depth")
        if rule.depth is not None and rule.depth not in DEPTH_RULES:
            raise RegkitError(f"depth is one of {', '.join(DEPTH_RULES)}, not {rule.depth!r}", f"{key}.depth")
        if rule.action == "set":
            if not isinstance(value["set"], dict) or not value["set"]:
                raise RegkitError("set is a mapping of attribute -> value (e.g. {p: 0.2})", where)
            rule.values = {}
            for attr, v in value["set"].items():
                if isinstance(v, dict) and "schedule" in v:
                    try:
                        rule.values[attr] = ScheduleSpec.parse(v).build()
                    except RegkitError as err:
                        raise err.under(f"{where}.{attr}") from err.__cause__
                    rule.schedule_configs[attr] = v
                else:
                    rule.values[attr] = v
        elif rule.action == "wrap":
            try:
                rule.component = RegularizerSpec.parse(value["wrap"])
            except RegkitError as err:
                raise err.under(where) from err.__cause__
            if not callable(getattr(rule.component.entry.obj, "apply_to", None)):
                raise RegkitError(f"{rule.component.name} does not act on weights; wrap takes a weight regularizer "
                                  "(one with apply_to, e.g. weight_drop)", where)
        else:
            rule.component = layer_spec(value[rule.action], where)
        return rule

    def to_config(self) -> dict[str, Any]:
        """The recipe form of the rule (plain values, as checkpoints store it)."""
        out: dict[str, Any] = {}
        if self.path is not None:
            out["path"] = self.path
        if self.type_names:
            out["type"] = self.type_names if len(self.type_names) > 1 else self.type_names[0]
        if self.params is not None:
            out["params"] = self.params
        out[self.action] = {**self.values, **self.schedule_configs} if self.action == "set" else to_config(self.component)
        if self.action == "insert" and self.where != "after":
            out["where"] = self.where
        if self.layout is not None:
            out["layout"] = self.layout.name
        if self.depth is not None:
            out["depth"] = self.depth
        return out


def _with_include(value: Any, params: str, spec_type: type[Spec]) -> Any:
    """A penalty/constraint selects by its own ``include`` argument: the rule's ``params`` fills it."""
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict) and "name" in value and "include" not in value:
        entry = spec_type.registry.get(value["name"])
        if any(p.name == "include" for p in entry.parameters):
            return {**value, "include": params}
        if params != "*":
            raise RegkitError(f"{value['name']} has no include argument to select parameters with; leave params out",
                              "params")
    return value


def parse_rules(values: Any, key: str = "regularize") -> list[Rule]:
    """Every rule of a list, each error keyed by its place (``regularize.2.insert``)."""
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        raise RegkitError(f"rules are a list of mappings, not {values!r}", key)
    return [Rule.parse(v, f"{key}.{i}") for i, v in enumerate(values)]
