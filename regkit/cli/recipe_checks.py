"""Checks of a whole parsed recipe that no single constructor makes, before anything is built.

NaN / infinite numbers anywhere, Trainer flags Lightning accepts silently (``max_epochs: -3``), and
optimizer / scheduler arguments (built once on a dummy parameter, as torch checks them only when the
real optimizer is made, after training started). Each constructor checks its own arguments
(``regkit.errors.check``); an error a constructor raises is named by its key in regkit/cli/error_keys.py.
"""
from __future__ import annotations

import importlib
import math
import numbers
import warnings
from typing import Any, Iterator, Mapping, Optional

from regkit.errors import BadInput, describe


# ---------------------------------------------------------------------------------------------
# The whole recipe


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a parsed recipe (Namespaces, dicts, lists, specs)."""
    if hasattr(value, "as_dict") and not isinstance(value, type):
        value = value.as_dict()
    if hasattr(value, "to_config") and hasattr(value, "kind"):  # a registry component spec
        value = value.to_config()
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{key}.{i}" if key else str(i))
    else:
        yield key, value


# Trainer flags Lightning accepts (or rejects only after the run started) although they make no sense.
# -1 means "no limit" for the first three.
TRAINER_RULES: dict[str, tuple[Any, str]] = {
    "max_epochs": (lambda v: v >= -1, "must be >= 0 (or -1: no limit)"),
    "max_steps": (lambda v: v >= -1, "must be >= 0 (or -1: no limit)"),
    "num_sanity_val_steps": (lambda v: v >= -1, "must be >= 0 (or -1: the whole validation set)"),
    "min_epochs": (lambda v: v >= 0, "must be >= 0"),
    "min_steps": (lambda v: v >= 0, "must be >= 0"),
    "limit_train_batches": (lambda v: v >= 0, "must be >= 0 (a count, or a fraction <= 1.0)"),
    "limit_val_batches": (lambda v: v >= 0, "must be >= 0 (a count, or a fraction <= 1.0)"),
    "limit_test_batches": (lambda v: v >= 0, "must be >= 0 (a count, or a fraction <= 1.0)"),
    "limit_predict_batches": (lambda v: v >= 0, "must be >= 0 (a count, or a fraction <= 1.0)"),
    "overfit_batches": (lambda v: v >= 0, "must be >= 0"),
    "val_check_interval": (lambda v: v > 0, "must be > 0"),
    "check_val_every_n_epoch": (lambda v: v >= 1, "must be >= 1"),
    "log_every_n_steps": (lambda v: v >= 1, "must be >= 1"),
    "accumulate_grad_batches": (lambda v: v >= 1, "must be >= 1"),
    "gradient_clip_val": (lambda v: v >= 0, "must be >= 0"),
    "num_nodes": (lambda v: v >= 1, "must be >= 1"),
    "fast_dev_run": (lambda v: v >= 0, "must be >= 0 (or true/false)"),
}


def check_config(config: Any) -> None:
    """Checks of a parsed recipe (one subcommand's config) that no constructor makes.

    Raises:
        BadInput: naming the dotted key and the value.
    """
    for key, value in _walk(config):
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInput(f"{value} is not a finite number", key)
    trainer = config.get("trainer") if hasattr(config, "get") else None
    for flag, (ok, text) in TRAINER_RULES.items():
        value = trainer.get(flag) if trainer is not None else None
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not ok(value):
            raise BadInput(f"{text}, got {value!r}", f"trainer.{flag}")
    _check_optimizers(config)
    _check_learning_rates(config, trainer.get("precision") if trainer is not None else None)
    _check_schedules(config, trainer)


def weight_dtype_name(precision: Any) -> str:
    """The dtype of the weights under a Trainer ``precision`` (mixed precision keeps float32 weights)."""
    text = str(precision)
    return {"64": "float64", "64-true": "float64", "16-true": "float16", "bf16-true": "bfloat16"}.get(text, "float32")


def _check_learning_rates(config: Any, precision: Any) -> None:
    """An optimizer's ``lr`` larger than the weights' dtype can hold (1e308 in float32) overflows
    at the first step: SGD stops with "value cannot be converted to type float without overflow",
    Adam trains on with weights of inf. Refused here, naming the dtype's largest value."""
    import torch

    dtype = weight_dtype_name(precision)
    largest = torch.finfo(getattr(torch, dtype)).max
    for key, cls, init_args in class_nodes(config):
        lr = init_args.get("lr")
        if issubclass(cls, torch.optim.Optimizer) and isinstance(lr, (int, float)) and abs(lr) > largest:
            where = f" (trainer.precision: {precision})" if dtype != "float32" else ""
            raise BadInput(f"is {lr!r}, larger than the {dtype} weights can hold{where} ({largest:.4g}): the first "
                           "optimizer step would overflow (weights of inf)", f"{key}.init_args.lr")


def _class(class_path: Any) -> Optional[type]:
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return obj if isinstance(obj, type) else None


def class_nodes(value: Any, key: str = "") -> Iterator[tuple[str, type, dict[str, Any]]]:
    """(key, class, init_args) of every ``class_path`` node of a recipe."""
    if hasattr(value, "as_dict") and not isinstance(value, type):
        value = value.as_dict()
    if isinstance(value, Mapping):
        cls = _class(value.get("class_path"))
        if cls is not None:
            yield key, cls, dict(value.get("init_args") or {})
        for k, v in value.items():
            yield from class_nodes(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from class_nodes(v, f"{key}.{i}" if key else str(i))


def _check_optimizers(config: Any) -> None:
    """Build every optimizer and LR scheduler of the recipe once on a dummy parameter: torch checks
    their arguments (``lr: -0.1``, ``betas: [1.5, 0.9]``) only when the real one is made in
    ``configure_optimizers``, after the run started."""
    import torch

    nodes: list[tuple[str, Any, dict[str, Any]]] = list(class_nodes(config))
    optimizers = [(k, c, a) for k, c, a in nodes if issubclass(c, torch.optim.Optimizer)]
    schedulers = [(k, c, a) for k, c, a in nodes if issubclass(c, torch.optim.lr_scheduler.LRScheduler)]
    for key, cls, init_args in optimizers:
        try:
            cls([torch.nn.Parameter(torch.zeros(1))], **init_args)
        except (ValueError, TypeError, RuntimeError) as err:  # RuntimeError: fused and foreach both true
            raise BadInput(f"{cls.__name__}: {err}", key) from err
    for key, cls, init_args in schedulers:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        try:
            scheduler = cls(optimizer, **init_args)
            if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # stepping before any optimizer step is the point here
                    for _ in range(2):  # some arguments fail only when the rate is first computed (T_max: 0)
                        scheduler.step()
                lrs = scheduler.get_last_lr()
                if not all(math.isfinite(lr) and lr >= 0 for lr in lrs):
                    raise ValueError(f"the learning rate becomes {lrs}")
        except (ValueError, TypeError, ZeroDivisionError) as err:
            raise BadInput(f"{cls.__name__}: {describe(err)}", key) from err


def _schedules(value: Any, key: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, mapping) of every schedule in a parsed recipe ({schedule: linear, ...})."""
    if hasattr(value, "as_dict") and not isinstance(value, type):
        value = value.as_dict()
    if hasattr(value, "to_config") and hasattr(value, "kind"):
        value = value.to_config()
    if isinstance(value, Mapping):
        if "schedule" in value:
            yield key, dict(value)
            return
        for k, v in value.items():
            yield from _schedules(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _schedules(v, f"{key}.{i}" if key else str(i))


def _check_schedules(config: Any, trainer: Any) -> None:
    """A schedule in steps or epochs names no time past the end of training (``cutoff: 50`` epochs
    with ``max_epochs: 20`` would never switch; a fraction past 1 is refused by the schedule itself)."""
    limits = {"steps": trainer.get("max_steps") if trainer is not None else None,
              "epochs": trainer.get("max_epochs") if trainer is not None else None}
    for key, schedule in _schedules(config):
        end = limits.get(schedule.get("unit", "fraction"))
        if not isinstance(end, int) or end <= 0:
            continue
        for name in ("begin", "until", "cutoff", "milestones"):
            given = schedule.get(name)
            times: list[Any] = given if isinstance(given, list) else [given]
            for i, t in enumerate(times):
                if isinstance(t, (int, float)) and t > end:
                    where = f"{key}.{name}" + (f".{i}" if isinstance(given, list) else "")
                    raise BadInput(f"is {t}, past the end of training (trainer.max_{schedule['unit']}: {end})", where)
