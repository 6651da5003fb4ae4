"""Checks that stop a bad recipe before anything runs (issue #12).

Three layers, all before any file is written or any optimizer step is taken:

* :func:`check` - one line at the top of a constructor states which arguments are sizes (> 0),
  counts (>= 0) or rates; a violation raises :class:`BadInput` naming the argument and its value.
* :func:`check_config` - checks of the whole parsed recipe that no single constructor sees:
  NaN / infinite numbers anywhere, Trainer flags Lightning accepts silently (``max_epochs: -3``),
  and optimizer / scheduler arguments (built once on a dummy parameter, as torch checks them only
  when the real optimizer is made, after training started).
* :func:`reported_against_keys` - any error a constructor raises while LightningCLI instantiates the
  recipe's classes becomes a :class:`BadInput` for the YAML key that holds that class's arguments.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import numbers
import warnings
from typing import Any, Iterator, Mapping, Optional

from regkit.errors import RegkitError


class BadInput(RegkitError):
    """A recipe value, command-line argument or file that regkit refuses (see :class:`RegkitError`:
    ``message`` says what is wrong with the offending value, ``key`` is the argument, the dotted
    recipe key or the file)."""


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _fails(value: Any, ok: Any) -> bool:
    for v in _values(value):
        if v is None or isinstance(v, bool):
            continue
        if not isinstance(v, numbers.Real) or not math.isfinite(v) or not ok(v):
            return True
    return False


_RULES = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "non_negative": (lambda v: v >= 0, "must be >= 0"),
    "rate": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "fraction": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
}


def check(
    arguments: Mapping[str, Any],
    positive: str = "",
    non_negative: str = "",
    rate: str = "",
    fraction: str = "",
) -> None:
    """Check constructor arguments by name, e.g. ``check(locals(), positive="hidden out_features")``.

    Each rule takes space-separated argument names; a list value is checked item by item and None is
    skipped (an optional argument left out). Every number must also be finite.

    Raises:
        BadInput: naming the first argument that breaks its rule, with its value.
    """
    for rule, names in (("positive", positive), ("non_negative", non_negative), ("rate", rate), ("fraction", fraction)):
        ok, text = _RULES[rule]
        for name in names.split():
            value = arguments[name]
            if _fails(value, ok):
                raise BadInput(f"{text}, got {value!r}", name)


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


def _class(class_path: Any) -> Optional[type]:
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module, _, name = class_path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return obj if isinstance(obj, type) else None


def _class_nodes(value: Any, key: str = "") -> Iterator[tuple[str, type, dict[str, Any]]]:
    """(key, class, init_args) of every ``class_path`` node of a recipe."""
    if hasattr(value, "as_dict") and not isinstance(value, type):
        value = value.as_dict()
    if isinstance(value, Mapping):
        cls = _class(value.get("class_path"))
        if cls is not None:
            yield key, cls, dict(value.get("init_args") or {})
        for k, v in value.items():
            yield from _class_nodes(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _class_nodes(v, f"{key}.{i}" if key else str(i))


def _check_optimizers(config: Any) -> None:
    """Build every optimizer and LR scheduler of the recipe once on a dummy parameter: torch checks
    their arguments (``lr: -0.1``, ``betas: [1.5, 0.9]``) only when the real one is made in
    ``configure_optimizers``, after the run started."""
    import torch

    nodes: list[tuple[str, Any, dict[str, Any]]] = list(_class_nodes(config))
    optimizers = [(k, c, a) for k, c, a in nodes if issubclass(c, torch.optim.Optimizer)]
    schedulers = [(k, c, a) for k, c, a in nodes if issubclass(c, torch.optim.lr_scheduler.LRScheduler)]
    for key, cls, init_args in optimizers:
        try:
            cls([torch.nn.Parameter(torch.zeros(1))], **init_args)
        except (ValueError, TypeError) as err:
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


# ---------------------------------------------------------------------------------------------
# Errors raised while the recipe's classes are instantiated


def _class_keys(config: Any) -> dict[type, list[str]]:
    """Every class a recipe names (``class_path`` nodes and registry component specs), with the keys
    that hold its arguments."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    keys: dict[type, list[str]] = {}
    for key, cls, _ in _class_nodes(config):
        keys.setdefault(cls, []).append(f"{key}.init_args")
    keys.setdefault(Trainer, []).append("trainer")  # argument groups, not class_path nodes
    keys.setdefault(ModelCheckpoint, []).append("checkpoint")

    def specs(value: Any, key: str) -> None:
        if hasattr(value, "as_dict") and not isinstance(value, type):
            value = value.as_dict()
        if hasattr(value, "entry") and hasattr(value, "kind") and hasattr(value, "kwargs"):
            try:
                obj = value.entry.obj
            except Exception:  # an unknown name is reported while parsing
                return
            if isinstance(obj, type):
                keys.setdefault(obj, []).append(key)
            value = value.kwargs
        if isinstance(value, Mapping):
            for k, v in value.items():
                specs(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                specs(v, f"{key}.{i}" if key else str(i))

    specs(config, "")
    return keys


def _frames_self(err: BaseException) -> list[Any]:
    """The ``self`` of every constructor frame in the traceback of ``err`` and of its causes, outermost
    first."""
    found = []
    for e in _chain(err):  # a cause's traceback continues below where its successor was raised
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
                found.append(frame.f_locals["self"])
            tb = tb.tb_next
    return found


def key_of_error(err: BaseException, config: Any) -> str:
    """The recipe key that holds the arguments of the deepest recipe-named class whose constructor
    is in the traceback of ``err`` ("" when none is)."""
    keys = _class_keys(config)
    best = ""
    for obj in _frames_self(err):
        candidates = keys.get(type(obj), [])
        if len(candidates) == 1 or (candidates and not best):
            best = candidates[0]
        elif candidates:  # the same class under several keys: the one below what we have
            below = [k for k in candidates if k.startswith(best + ".")]
            best = below[0] if len(below) == 1 else best
    return best


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors it was raised from, outermost first."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return chain


def describe(err: BaseException) -> str:
    """An error as one line: its message, with its type unless it is a plain value/type error."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (ValueError, TypeError, FileNotFoundError)) and not isinstance(err, BadInput):
        return text
    return text if isinstance(err, BadInput) else f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def reported_against_keys(config: Any) -> Iterator[None]:
    """Turn any error a constructor raises inside the block into a :class:`BadInput` whose key is
    the recipe key holding that class's arguments (``model.init_args.network.hidden`` when the
    constructor itself named the argument)."""
    try:
        yield
    except BadInput as err:
        if err.key.split(".")[0] in ("model", "data", "trainer") or not err.key:
            raise
        key = key_of_error(err, config)
        raise err.under(key) from err
    except Exception as err:
        key = key_of_error(err, config)
        chain = _chain(err)
        inner = [e for e in chain if isinstance(e, BadInput)]
        if inner:
            raise inner[-1].under(key) from err
        # the original error: jsonargparse wraps constructor errors in its own long report
        raise BadInput(describe(chain[-1]), key) from err
