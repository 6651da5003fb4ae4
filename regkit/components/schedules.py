"""Schedules (kind ``schedule``): a numeric argument of a regularizer, penalty or constraint that
changes over training, written as a value in YAML::

    dropout: {name: dropout, p: {schedule: linear, start: 0.0, end: 0.1, until: 0.3}}
    p: {schedule: early, value: 0.1, cutoff: 0.2}          # on for the first 20 % of training
    p: {schedule: step, values: [0.0, 0.1], milestones: [5], unit: epochs}

Time is a fraction of training (``unit: fraction``, the default: steps done / total steps),
``steps`` or ``epochs``. The value is a pure function of the training progress, computed on the host
at the start of every training batch and set as the component's attribute (``module.p = value``):
no tensor is read back from the device, and a resumed run recomputes exactly the values it had.
Kinds: ``constant``, ``linear``, ``cosine``, ``step``, ``early`` / ``late`` (Liu et al., 2023,
"Dropout Reduces Underfitting"), and any registered one (``@register("schedule")`` on a
:class:`Schedule` subclass).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

from torch import nn

from regkit.errors import BadInput
from regkit.registry import register
from regkit.registry.spec import SCHEDULES as ATTRIBUTE

UNITS = ("fraction", "steps", "epochs")


@dataclass(frozen=True)
class Progress:
    """Where training is: optimizer steps done (of ``total_steps``) and the current epoch (of
    ``max_epochs``, -1 when only steps limit training)."""

    step: int = 0
    total_steps: int = 1
    epoch: int = 0
    max_epochs: int = -1

    def at(self, unit: str) -> float:
        if unit == "steps":
            return float(self.step)
        if unit == "epochs":
            return float(self.epoch)
        return self.step / max(self.total_steps, 1)


class Schedule:
    """A value over training. Subclasses implement :meth:`at` (the value at time ``t`` in
    ``self.unit``) and :meth:`values` (every value it can take at its breakpoints, which the
    component's own argument checks see before training)."""

    unit: str = "fraction"
    factor: float = 1.0  # a depth rule's scaling (regkit/rules/)

    def __init__(self, unit: str = "fraction") -> None:
        if unit not in UNITS:
            raise BadInput(f"must be one of {', '.join(UNITS)}, got {unit!r}", "unit")
        self.unit = unit

    def at(self, t: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def values(self) -> list[float]:  # pragma: no cover
        raise NotImplementedError

    def times(self) -> list[float]:
        """The times this schedule names (cutoffs, milestones), checked against the training length."""
        return []

    def value(self, progress: Progress) -> float:
        return self.factor * self.at(progress.at(self.unit))

    def initial(self) -> float:
        """The value before the first training step (what the component is built with)."""
        return self.value(Progress())

    def scaled(self, factor: float) -> "Schedule":
        """The same schedule times ``factor`` (block l of L under ``depth: linear``)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, factor=self.factor * factor)
        return copy

    def _check_times(self, **times: float) -> None:
        for name, t in times.items():
            if t < 0 or (self.unit == "fraction" and t > 1):
                where = "in [0, 1] (a fraction of training)" if self.unit == "fraction" else ">= 0"
                raise BadInput(f"a schedule's times are {where}, got {t!r}", name)


def _ramp(t: float, begin: float, until: float) -> float:
    """0 before ``begin``, 1 from ``until`` on, linear in between."""
    if until <= begin:
        return 0.0 if t < begin else 1.0
    return min(max((t - begin) / (until - begin), 0.0), 1.0)


@register("schedule", "constant")
class Constant(Schedule):
    """The same value all along.

    Args:
        value: the value.
    """

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value_ = float(value)

    def at(self, t: float) -> float:
        return self.value_

    def values(self) -> list[float]:
        return [self.value_]


@register("schedule", "linear")
class Linear(Schedule):
    """``start`` until ``begin``, then linear to ``end`` at ``until``, then ``end`` (DropBlock's ramp of
    ``keep_prob``, Ghiasi et al., 2018; Curriculum Dropout's rise, Morerio et al., 2017).

    Args:
        start: the value at the beginning.
        end: the value from ``until`` on.
        begin: when the ramp starts.
        until: when it reaches ``end``.
        unit: fraction (of training), steps or epochs.
    """

    def __init__(self, start: float, end: float, begin: float = 0.0, until: float = 1.0, unit: str = "fraction") -> None:
        super().__init__(unit)
        self.start, self.end, self.begin, self.until = float(start), float(end), float(begin), float(until)
        self._check_times(begin=self.begin, until=self.until)
        if self.until < self.begin:
            raise BadInput(f"until ({until}) comes before begin ({begin})", "until")

    def at(self, t: float) -> float:
        return self.start + (self.end - self.start) * _ramp(t, self.begin, self.until)

    def values(self) -> list[float]:
        return [self.start, self.end]

    def times(self) -> list[float]:
        return [self.begin, self.until]


@register("schedule", "cosine")
class Cosine(Linear):
    """``start`` to ``end`` along half a cosine between ``begin`` and ``until`` (as SGDR's rate,
    Loshchilov & Hutter, 2017).

    Args:
        start: the value at the beginning.
        end: the value from ``until`` on.
        begin: when it starts to change.
        until: when it reaches ``end``.
        unit: fraction (of training), steps or epochs.
    """

    def at(self, t: float) -> float:
        return self.start + (self.end - self.start) * (1 - math.cos(math.pi * _ramp(t, self.begin, self.until))) / 2


@register("schedule", "step")
class Step(Schedule):
    """``values[i]`` from ``milestones[i - 1]`` to ``milestones[i]``: a piecewise-constant value.

    Args:
        values: one more value than milestones.
        milestones: increasing times at which the next value starts.
        unit: fraction (of training), steps or epochs.
    """

    def __init__(self, values: list[float], milestones: list[float], unit: str = "fraction") -> None:
        super().__init__(unit)
        if len(values) != len(milestones) + 1:
            raise BadInput(f"needs one more value than milestones, got {len(values)} values and "
                           f"{len(milestones)} milestones", "values")
        if list(milestones) != sorted(milestones):
            raise BadInput(f"must increase, got {milestones}", "milestones")
        self._check_times(**{f"milestones.{i}": m for i, m in enumerate(milestones)})
        self.steps, self.milestones = [float(v) for v in values], [float(m) for m in milestones]

    def at(self, t: float) -> float:
        return self.steps[sum(t >= m for m in self.milestones)]

    def values(self) -> list[float]:
        return list(self.steps)

    def times(self) -> list[float]:
        return list(self.milestones)


@register("schedule", "early")
class Early(Schedule):
    """``value`` until ``cutoff``, then 0: early dropout, for models that underfit (Liu et al., 2023,
    "Dropout Reduces Underfitting").

    Args:
        value: the value before the cutoff.
        cutoff: when it turns off.
        unit: fraction (of training), steps or epochs.
    """

    def __init__(self, value: float, cutoff: float, unit: str = "fraction") -> None:
        super().__init__(unit)
        self.on, self.cutoff = float(value), float(cutoff)
        self._check_times(cutoff=self.cutoff)

    def at(self, t: float) -> float:
        return self.on if t < self.cutoff else 0.0

    def values(self) -> list[float]:
        return [self.on, 0.0]

    def times(self) -> list[float]:
        return [self.cutoff]


@register("schedule", "late")
class Late(Early):
    """0 until ``cutoff``, then ``value``: late dropout, for models that overfit (Liu et al., 2023,
    "Dropout Reduces Underfitting").

    Args:
        value: the value from the cutoff on.
        cutoff: when it turns on.
        unit: fraction (of training), steps or epochs.
    """

    def at(self, t: float) -> float:
        return 0.0 if t < self.cutoff else self.on


def scheduled(root: Optional[nn.Module], others: Iterable[tuple[str, Any]] = ()) -> Iterator[tuple[str, Any, dict[str, Schedule]]]:
    """``(path, component, schedules)`` of every component with scheduled arguments: the modules of
    ``root`` and the ``(name, object)`` pairs of ``others`` (constraints, which are not modules)."""
    if root is not None:
        for name, module in root.named_modules():
            found = getattr(module, ATTRIBUTE, None)
            if found:
                yield name, module, found
    for name, obj in others:
        found = getattr(obj, ATTRIBUTE, None)
        if found:
            yield name, obj, found


def apply(found: Iterable[tuple[str, Any, dict[str, Schedule]]], progress: Progress) -> dict[str, float]:
    """Set every scheduled argument of :func:`scheduled`'s components to its value at ``progress``;
    returns ``{path.argument: value}`` (what a task logs as ``train/schedule/<path>.<argument>``)."""
    values: dict[str, float] = {}
    for path, component, schedules in found:
        for name, schedule in schedules.items():
            value = schedule.value(progress)
            setattr(component, name, value)
            values[f"{path}.{name}" if path else name] = value
    return values


def training_progress(trainer: Any, step: int) -> Progress:
    """The :class:`Progress` of a Lightning trainer after ``step`` optimizer steps (or batches)."""
    total = trainer.estimated_stepping_batches
    total = int(total) if math.isfinite(total) else max(step, 1)
    return Progress(step=step, total_steps=max(total, 1), epoch=trainer.current_epoch,
                    max_epochs=trainer.max_epochs if trainer.max_epochs is not None else -1)


class ScheduledArguments:
    """Sets every scheduled argument of a LightningModule's components at the start of each training
    batch, from the trainer's progress, and logs the values every ``log_every_n_steps`` steps as
    ``train/schedule/<module path>.<argument>``. Values are computed on the host: no device tensor
    is read, and a resumed run recomputes the same values from its step. Used by regkit's tasks and
    the Regularize callback."""

    def __init__(self) -> None:
        self.found: Optional[list[tuple[str, Any, dict[str, Schedule]]]] = None

    def update(self, module: Any, step: int, others: Iterable[tuple[str, Any]] = ()) -> dict[str, float]:
        if self.found is None:  # the components are fixed once training starts
            self.found = list(scheduled(module, others))
        if not self.found:
            return {}
        trainer = module.trainer
        values = apply(self.found, training_progress(trainer, step))
        every = getattr(trainer, "log_every_n_steps", 1) or 1
        due = module.logging_due() if callable(getattr(module, "logging_due", None)) else step % every == 0
        if due:  # a regkit task's own logging interval, else every log_every_n_steps steps
            for key, value in values.items():
                module.log(f"train/schedule/{key}", value, on_step=True, on_epoch=False)
        return values
