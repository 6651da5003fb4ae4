"""Applying rules to a built model: :func:`regularize` (the one function every entry point calls).

Modules are changed in place and keep their names, so a model's own code (``self.fc2.out_features``)
and its state-dict keys still work:

* **insert** adds the component as a child of the matched module (``<match>.regkit_after``, or
  ``regkit_before``: an ``nn.Sequential`` of everything inserted there) and runs it on the module's
  output (the first element of a tuple output) from a forward hook, or on its first input from a
  forward pre-hook. It follows ``train()`` / ``eval()`` and MC dropout finds it.
* **replace** puts the component where the module was (its parent's attribute); arguments the new
  component shares with the old module (``p``, ``num_features``, ``eps``, ``in_features``, ...) are
  taken from it, and its parameters and buffers too when their names and shapes agree.
* **set** assigns attributes of the matched modules (``p``, ``drop_prob``), after checking they exist.
* **wrap** applies a weight regularizer (``weight_drop``) to the matched modules' parameters as a
  ``torch.nn.utils.parametrize`` parametrization, so fused kernels (cuDNN LSTM) are kept.
* **penalty** / **constraint** build the component on the parameters ``params`` selects; the caller
  (a task, the Regularize callback) adds them to the loss / applies them after each step.

A rule that matches nothing, a type or layout a component cannot work with, an attribute a module
lacks: each is a :class:`~regkit.errors.RegkitError` keyed by the rule (``regularize.2.insert``),
raised before any module is changed by that rule.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Optional, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from regkit.components.layouts import ACTIVATIONS, MAPS, Layout, layout_arguments, layouts_of
from regkit.components.schedules import Schedule
from regkit.errors import RegkitError
from regkit.registry import Spec, did_you_mean
from regkit.registry.spec import SCHEDULES
from regkit.rules.report import Change, Report
from regkit.rules.rule import Rule, parse_rules

AFTER, BEFORE = "regkit_after", "regkit_before"
RATE_NAMES = ("p", "drop_prob", "drop_rate", "rate")
# Where regkit can tell the layout of a module's input and output from its type.
_MAPS_TYPES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm2d, nn.BatchNorm3d, nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool3d, nn.AvgPool3d,
)


def regularize(model: nn.Module, rules: Any, key: str = "regularize") -> Report:
    """Apply ``rules`` (a list of YAML-style mappings or :class:`Rule` objects) to ``model`` in
    place, in order, each rule seeing the model as the rules before it left it; returns the
    :class:`Report` of every change, with the penalties and constraints the rules built."""
    report = Report()
    for rule in parse_rules(rules, key):
        apply_rule(model, rule, report)
    return report


def selected_modules(model: nn.Module, rule: Rule) -> list[tuple[str, nn.Module]]:
    """The ``(qualified name, module)`` pairs ``rule`` selects, in ``named_modules`` order; never
    the inside of a parametrization."""
    found = []
    for name, module in model.named_modules():
        if ".parametrizations." in f".{name}." or isinstance(module, parametrize.ParametrizationList):
            continue
        if rule.path is not None and not fnmatch.fnmatchcase(name, rule.path):
            continue
        if rule.types and not isinstance(module, rule.types):
            continue
        found.append((name, module))
    return found


def apply_rule(model: nn.Module, rule: Rule, report: Report) -> None:
    if rule.action in ("penalty", "constraint"):
        _attach(model, rule, report)
        return
    matches = selected_modules(model, rule)
    if not matches:
        what = " and ".join(filter(None, [f"path {rule.path!r}" if rule.path is not None else "",
                                          f"type {', '.join(rule.type_names)}" if rule.type_names else ""]))
        hint = ""
        if rule.path:
            names = [n for n, m in model.named_modules() if n and (not rule.types or isinstance(m, rule.types))]
            hint = did_you_mean(rule.path.replace("*", "0"), names).replace("; did you mean", "; modules with close names:")
        raise RegkitError(f"matches no module of {type(model).__name__} ({what}){hint} "
                          "(regkit.rules.module_table(model) lists every module with its type)", rule.key)
    rates = _depth_rates(rule, len(matches))
    action = {"insert": _insert, "replace": _replace, "set": _set, "wrap": _wrap}[rule.action]
    # Everything is built (and checked) for every match first; only then is the model changed.
    changes = [action(model, rule, name, module, scale) for (name, module), scale in zip(matches, rates)]
    for apply, change in changes:
        apply()
        report.changes.append(change)


def _depth_rates(rule: Rule, n: int) -> list[float]:
    """The factor each match's rate is multiplied by: 1, or l / L for ``depth: linear``."""
    if rule.depth is None:
        return [1.0] * n
    return [(i + 1) / n for i in range(n)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scaled(kwargs: dict[str, Any], scale: float, rule: Rule) -> dict[str, Any]:
    """``kwargs`` with the rate (a number or a schedule) times ``scale``, under ``depth: linear``."""
    if rule.depth is None:
        return kwargs
    names = [k for k in RATE_NAMES if _is_number(kwargs.get(k)) or isinstance(kwargs.get(k), Schedule)]
    if not names:
        raise RegkitError(f"depth: linear spreads a rate ({', '.join(RATE_NAMES)}) over the matches; this rule "
                          "sets none", f"{rule.key}.depth")
    return {**kwargs, **{k: round(kwargs[k] * scale, 12) if _is_number(kwargs[k]) else kwargs[k].scaled(scale)
                         for k in names}}


def _component(spec: Spec, rule: Rule, scale: float, where: str, known: dict[str, Any], layout: Optional[Layout]) -> nn.Module:
    """Build the rule's component for one match: the layout's arguments, what the old module knows,
    the depth-scaled rate; errors keyed by the rule's action."""
    key = f"{rule.key}.{rule.action}"
    try:
        provided = dict(known)
        if spec.kind == "regularizer" and rule.action != "wrap":  # wrap acts on weights, not on a tensor layout
            provided.update(_layout_arguments(spec, rule, where, layout))
        if rule.depth is not None and not any(k in spec.kwargs for k in RATE_NAMES):
            raise RegkitError(f"depth: linear spreads a rate ({', '.join(RATE_NAMES)}) over the matches; this "
                              "rule sets none", f"{rule.key}.depth")
        numbers = {k: v for k, v in spec.kwargs.items() if k in RATE_NAMES and _is_number(v)}
        built = spec.with_arguments(**_scaled(numbers, scale, rule) if numbers else {}).fill(**provided)
        schedules = getattr(built, SCHEDULES, None)
        if schedules and rule.depth is not None:  # a scheduled rate is scaled once built
            scaled = {k: v.scaled(scale) if k in RATE_NAMES else v for k, v in schedules.items()}
            setattr(built, SCHEDULES, scaled)
            for name, schedule in scaled.items():
                setattr(built, name, schedule.initial())
    except RegkitError as err:
        if err.key.startswith(rule.key):
            raise
        raise err.under(key) from err
    except (ValueError, TypeError) as err:
        raise RegkitError(f"{spec.name} at {where or 'the model'}: {err}", key) from err
    if not isinstance(built, nn.Module):
        raise RegkitError(f"{spec.name} is not a torch.nn.Module ({type(built).__name__}), so it cannot go into a "
                          "model", key)
    return built


def _layout_arguments(spec: Spec, rule: Rule, where: str, layout: Optional[Layout]) -> dict[str, Any]:
    """The component's arguments for the layout at the match: the rule's ``layout``, else the one
    the module's type tells, else none for an element-wise component (it works on any layout)."""
    if layout is not None:
        return layout_arguments(spec, layout, where)
    supported = layouts_of(spec.entry.obj)
    elementwise = all(supported.get(lay) == {} for lay in ACTIVATIONS)
    if elementwise:
        return {}
    works = ", ".join(lay.name for lay in supported) or "none"
    raise RegkitError(f"{spec.name} depends on what the axes of {where}'s tensors mean and regkit cannot tell "
                      f"them from its type; add layout: ({works}) to the rule", f"{rule.key}.layout")


def _match_layout(rule: Rule, module: nn.Module) -> Optional[Layout]:
    if rule.layout is not None:
        return rule.layout
    return MAPS if isinstance(module, _MAPS_TYPES) else None


def _show(value: Any) -> str:
    """A value in the plan: a schedule as its kind and values (``linear 0 -> 0.1``)."""
    if isinstance(value, Schedule):
        shown = " -> ".join(f"{v * value.factor:g}" for v in value.values())
        return f"{type(value).__name__.lower()} {shown}"
    return repr(value)


def _describe(spec: Spec, module: nn.Module) -> str:
    return f"{spec.name}({module.extra_repr()})" if module.extra_repr() else spec.name


# ------------------------------------------------------------------------------------- insert


def _run_after(module: nn.Module, args: Any, output: Any) -> Any:
    inserted = module.get_submodule(AFTER)
    if isinstance(output, torch.Tensor):
        return inserted(output)
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return (inserted(output[0]), *output[1:])
    raise TypeError(f"regkit inserted {inserted} after a {type(module).__name__}, whose output is a "
                    f"{type(output).__name__}, not a tensor or a tuple starting with one")


def _run_before(module: nn.Module, args: Any) -> Any:
    inserted = module.get_submodule(BEFORE)
    if not args or not isinstance(args[0], torch.Tensor):
        raise TypeError(f"regkit inserted {inserted} before a {type(module).__name__}, which was called without "
                        "a tensor as its first positional argument")
    return (inserted(args[0]), *args[1:])


def _insert(model: nn.Module, rule: Rule, name: str, module: nn.Module, scale: float) -> tuple[Any, Change]:
    assert rule.component is not None
    built = _component(rule.component, rule, scale, name, {}, _match_layout(rule, module))
    built.train(module.training)
    slot = AFTER if rule.where == "after" else BEFORE

    def apply() -> None:
        if not hasattr(module, slot):
            module.add_module(slot, nn.Sequential())
            if slot == AFTER:
                module.register_forward_hook(_run_after)
            else:
                module.register_forward_pre_hook(_run_before)
        _move_like(built, module)
        cast(nn.Sequential, module.get_submodule(slot)).append(built)

    return apply, Change(rule.key, name, type(module).__name__, "insert", f"{_describe(rule.component, built)} {rule.where}")


# ------------------------------------------------------------------------------------ replace


def _plain_attributes(module: nn.Module) -> dict[str, Any]:
    """The module's plain (number, bool, string, tuple) attributes, what a replacement may share;
    ``bias`` as whether there is one."""
    out = {k: v for k, v in vars(module).items()
           if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple)) and k != "training"}
    bias = getattr(module, "bias", False)
    if bias is None or isinstance(bias, torch.Tensor):  # a layer's bias parameter: whether it has one
        out["bias"] = bias is not None
    for k in RATE_NAMES:  # a rate kept in a property (regkit's DropoutBase)
        if k not in out and isinstance(getattr(type(module), k, None), property):
            out[k] = getattr(module, k)
    return out


def _replace(model: nn.Module, rule: Rule, name: str, module: nn.Module, scale: float) -> tuple[Any, Change]:
    assert rule.component is not None
    if not name:
        raise RegkitError("cannot replace the model itself (path '')", rule.key)
    spec = rule.component
    accepted = {p.name for p in spec.entry.parameters}
    known = {k: v for k, v in _plain_attributes(module).items() if k in accepted and k not in spec.kwargs}
    built = _component(spec, rule, scale, name, known, _match_layout(rule, module))
    built.train(module.training)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old, new = module.state_dict(), built.state_dict()
    shared = [k for k in old if k in new and old[k].shape == new[k].shape]
    taken = ", ".join(sorted(known)) or "nothing"

    def apply() -> None:
        _move_like(built, module)
        if shared:
            built.load_state_dict({k: old[k] for k in shared}, strict=False)
        setattr(parent, child, built)

    detail = f"-> {_describe(spec, built)}; took {taken}" + ("; state kept" if shared else "")
    return apply, Change(rule.key, name, type(module).__name__, "replace", detail)


def _move_like(new: nn.Module, old: nn.Module) -> None:
    """Put ``new`` on the device (and floating dtype) of ``old``'s first tensor, if it has one."""
    tensor = next(iter([*old.parameters(), *old.buffers()]), None)
    if tensor is not None:
        new.to(device=tensor.device)
        if tensor.is_floating_point():
            new.to(dtype=tensor.dtype)


# ---------------------------------------------------------------------------------------- set


def _set(model: nn.Module, rule: Rule, name: str, module: nn.Module, scale: float) -> tuple[Any, Change]:
    values = _scaled(dict(rule.values), scale, rule)
    schedules = {k: v for k, v in values.items() if isinstance(v, Schedule)}
    for attr, value in values.items():
        if not hasattr(module, attr):
            attrs = [k for k in _plain_attributes(module)]
            raise RegkitError(f"{name or 'the model'} ({type(module).__name__}) has no attribute {attr!r}"
                              + (f"; its attributes are: {', '.join(attrs)}" if attrs else ""), f"{rule.key}.set.{attr}")
        current = getattr(module, attr)
        if isinstance(current, (nn.Module, torch.Tensor)) or callable(current):
            raise RegkitError(f"{name}.{attr} is a {type(current).__name__}, not a value set can change",
                              f"{rule.key}.set.{attr}")
        for v in value.values() if isinstance(value, Schedule) else [value]:
            if attr in RATE_NAMES and (not _is_number(v) or not 0 <= v < 1):
                raise RegkitError(f"{attr} is a rate in [0, 1), got {v!r}", f"{rule.key}.set.{attr}")

    def apply() -> None:
        for attr, value in values.items():
            setattr(module, attr, value.initial() if isinstance(value, Schedule) else value)
        if schedules:
            setattr(module, SCHEDULES, {**(getattr(module, SCHEDULES, None) or {}), **schedules})

    detail = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={_show(v)}" for k, v in values.items())
    return apply, Change(rule.key, name, type(module).__name__, "set", detail)


# --------------------------------------------------------------------------------------- wrap


def _wrap(model: nn.Module, rule: Rule, name: str, module: nn.Module, scale: float) -> tuple[Any, Change]:
    assert rule.component is not None
    built = _component(rule.component, rule, scale, name, {}, None)
    names = cast(Any, built).matching(module) if hasattr(built, "matching") else []
    if not names:
        raise RegkitError(f"{rule.component.name}: no parameter of {name or 'the model'} ({type(module).__name__}) "
                          f"matches {getattr(built, 'names', '?')!r}; its parameters: "
                          f"{', '.join(n for n, _ in module.named_parameters(recurse=False)) or '(none)'}",
                          f"{rule.key}.wrap")

    def apply() -> None:
        cast(Any, built).apply_to(module)

    return apply, Change(rule.key, name, type(module).__name__, "wrap", f"{_describe(rule.component, built)} on {', '.join(names)}")


# --------------------------------------------------------------------------- penalty, constraint


def _attach(model: nn.Module, rule: Rule, report: Report) -> None:
    assert rule.component is not None and rule.params is not None
    params = [n for n, _ in model.named_parameters() if fnmatch.fnmatchcase(n, rule.params)]
    if not params:
        raise RegkitError(f"params {rule.params!r} matches no parameter of {type(model).__name__}", f"{rule.key}.params")
    try:
        built = rule.component.build()  # a constraint's setup (e.g. a parametrization) is the caller's
    except RegkitError as err:
        raise err.under(f"{rule.key}.{rule.action}") from err
    except (ValueError, TypeError) as err:
        raise RegkitError(str(err), f"{rule.key}.{rule.action}") from err
    (report.penalties if rule.action == "penalty" else report.constraints).append((rule.component.name, built))
    shown = ", ".join(params[:4]) + (f", ... ({len(params)} in all)" if len(params) > 4 else "")
    report.changes.append(Change(rule.key, rule.params, "parameters", rule.action, f"{rule.component.name} on {shown}"))


def module_table(model: nn.Module, depth: int = 0) -> str:
    """Every module of ``model`` with its type, one per line (what rules select by path and type);
    ``depth`` > 0 shows only names with at most that many dots."""
    rows = [(name or "(model)", type(module).__module__ + "." + type(module).__qualname__)
            for name, module in model.named_modules()
            if not depth or name.count(".") < depth]
    width = max(len(n) for n, _ in rows)
    return "\n".join(f"{n:<{width}}  {t}" for n, t in rows)


def stochastic_inserted(model: nn.Module) -> Iterable[nn.Module]:
    """The modules rules inserted into ``model`` (what ``regkit_after`` / ``regkit_before`` hold)."""
    for name, module in model.named_modules():
        if name.endswith((AFTER, BEFORE)):
            yield from module.children()
