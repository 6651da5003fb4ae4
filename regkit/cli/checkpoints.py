"""Checkpoints given to ``--ckpt_path``, read as data before anything from them is imported.

A checkpoint must be a file that ``torch.load(weights_only=True)`` reads as a Lightning checkpoint,
and every import path in its hyperparameters (a ``class_path``, or any dotted string the parser
could import) may only name regkit's classes or those of an installed or ``--plugins`` regkit
plugin, never regkit's command: a checkpoint is data, so it must not choose code to import
(:func:`check_checkpoint`). Its hyperparameters become the task's arguments, under the options given
on the command line next to it (:func:`checkpoint_hparams`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterator

from regkit.cli.commands import dotted_keys
from regkit.cli.error_report import fail
from regkit.errors import BadInput, describe


# Values of --ckpt_path that Lightning (or regkit) resolves itself instead of naming a file.
CKPT_KEYWORDS = ("last", "best", "hpc", "auto", "registry")
# What Lightning itself stores under ``_instantiator`` when the CLI saved the checkpoint.
TRUSTED_INSTANTIATORS = ("lightning.pytorch.cli.instantiate_module",)


def trusted_modules() -> set[str]:
    """Top-level modules whose classes a checkpoint may name: regkit, every installed regkit plugin
    (from entry-point metadata, nothing imported) and every module that registered a component
    (this includes ``--plugins`` files and modules)."""
    from regkit import registry

    modules = {"regkit", *registry.installed.top_level_modules()}  # none when autoload is disabled
    for entry in registry.entries():
        modules.add(entry.module.split(".")[0])
    return modules


# The command itself: a checkpoint naming it (``regkit.__main__.Classifier``) would run regkit inside regkit.
COMMAND_MODULES = ("regkit.cli", "regkit.compare")


def is_import_path(value: Any) -> bool:
    """Whether jsonargparse could import ``value`` if a parameter's type resolves it (a class, a
    callable such as ``optimizer``): a string of dot-separated identifiers (``this.s``)."""
    return isinstance(value, str) and "." in value and all(part.isidentifier() for part in value.split("."))


def _class_paths(value: Any, key: str = "") -> Iterator[tuple[str, str, str]]:
    """``(key, import path, kind)`` of every string in hyperparameters that could be imported:
    ``class_path`` values (kind ``called``: the class is built when the task is rebuilt), the
    ``type`` of every rule (``type``: only imported, to match modules) and any other dotted string
    (``string``: the parser imports it where the parameter's type is a class or a callable)."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k in ("_class_path", "class_path", "_instantiator") and isinstance(v, str):
                yield sub, v, "called"
            elif k == "type" and key.split(".")[-2:-1] in (["regularize"], ["rules"]):
                for t in v if isinstance(v, list) else [v]:
                    if isinstance(t, str):
                        yield sub, t, "type"
            else:
                yield from _class_paths(v, sub)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _class_paths(v, f"{key}.{i}" if key else str(i))
    elif is_import_path(value):
        yield key, value, "string"


def recipe_class_paths(config: Any) -> frozenset[str]:
    """Every class path (and rule type) a parsed recipe names: what a checkpoint used with it may
    name too (the recipe is trusted like a script; the checkpoint only as far as the recipe goes)."""
    from regkit.registry.spec import to_config

    def plain(value: Any) -> Any:
        if hasattr(value, "as_dict") and not isinstance(value, type):
            value = value.as_dict()
        value = to_config(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return frozenset(path for _, path, _ in _class_paths(plain(config)))


def check_trusted_hparams(hparams: Any, where: str, named: frozenset[str] = frozenset()) -> None:
    """Every string in checkpoint hyperparameters that could be imported names a regkit or
    regkit-plugin class, or one the recipe given with it names (``named``); a rule's type may also
    be torch's, and a dotted string that is no class path may name no installed module at all (a
    rule's module path, ``network.fc``). Nothing is imported to decide; regkit's command
    (:data:`COMMAND_MODULES`, any ``__main__``) is never trusted."""
    import importlib.util

    trusted = None
    for key, path, kind in _class_paths(hparams):
        if key.endswith("_instantiator") and path in TRUSTED_INSTANTIATORS:
            continue
        if "__main__" in path.split(".") or any(path == m or path.startswith(m + ".") for m in COMMAND_MODULES):
            raise BadInput(
                f"hyperparameter {key} names {path!r}, which is regkit's command, not a class (importing it "
                "would run regkit inside regkit); a checkpoint is data and may not choose code to import",
                where,
            )
        if path in named or (kind == "type" and "." not in path):  # a bare type is torch.nn's
            continue
        if trusted is None:
            trusted = trusted_modules()
        root = path.split(".")[0]
        if root in (trusted | {"torch"} if kind == "type" else trusted):
            continue
        if kind == "string" and importlib.util.find_spec(root) is None:
            continue  # no module to import: a plain dotted string
        what = "class" if kind != "string" else "class or function (the parser imports such a string)"
        raise BadInput(
            f"hyperparameter {key} names {path!r}, which is not a {what} of regkit or of an installed "
            "regkit plugin, nor one the recipe names; a checkpoint is data and may not choose code to "
            "import (load it with the recipe that names it: --config)",
            where,
        )


def is_ckpt_keyword(value: str) -> bool:
    return value in CKPT_KEYWORDS or value.startswith("registry:")


def check_checkpoint(ckpt_path: Any, named: frozenset[str] = frozenset()) -> None:
    """``--ckpt_path`` names a Lightning checkpoint that loads safely and names only trusted classes.

    Raises:
        BadInput: with key ``ckpt_path`` and the file in the message.
    """
    if not isinstance(ckpt_path, (str, os.PathLike)) or is_ckpt_keyword(str(ckpt_path)):
        return
    trusted_hyperparameters(str(ckpt_path), named)


def trusted_hyperparameters(ckpt_path: str, named: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The task hyperparameters of a checkpoint after the checks of :func:`check_checkpoint` (safe
    load, a state_dict, only trusted class paths), read once per file version."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise BadInput(f"{str(ckpt_path)!r}: {'is a directory' if path.is_dir() else 'no such file'}", "ckpt_path")
    stat = path.stat()
    return dict(_read_trusted(str(ckpt_path), stat.st_mtime_ns, stat.st_size, named)[0])


def saved_checkpoint_dirs(ckpt_path: str, named: frozenset[str] = frozenset()) -> dict[str, str]:
    """The ``dirpath`` each ModelCheckpoint of the run that wrote ``ckpt_path`` had, by the
    callback's ``state_key`` (read with the trust checks of :func:`trusted_hyperparameters`)."""
    stat = Path(ckpt_path).stat()
    return dict(_read_trusted(str(ckpt_path), stat.st_mtime_ns, stat.st_size, named)[1])


@functools.lru_cache(maxsize=4)
def _read_trusted(ckpt_path: str, mtime_ns: int, size: int, named: frozenset[str]) -> tuple[dict[str, Any], dict[str, str]]:
    from regkit.callbacks.checkpoint_files import load_as_data

    path = Path(ckpt_path)
    try:
        ckpt = load_as_data(path)
    except Exception as err:
        raise BadInput(
            f"{str(ckpt_path)!r} is not a PyTorch checkpoint that loads safely (weights_only): {describe(err)}",
            "ckpt_path",
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise BadInput(f"{str(ckpt_path)!r} is not a Lightning checkpoint (it has no state_dict)", "ckpt_path")
    for field in ("hyper_parameters", "datamodule_hyper_parameters"):
        check_trusted_hparams(ckpt.get(field) or {}, f"ckpt_path {str(ckpt_path)!r}", named)
    callbacks = ckpt.get("callbacks")
    callbacks = callbacks if isinstance(callbacks, dict) else {}
    dirs = {str(key): state["dirpath"] for key, state in callbacks.items()
            if str(key).startswith("ModelCheckpoint") and isinstance(state, dict) and isinstance(state.get("dirpath"), str)}
    return dict(ckpt.get("hyper_parameters") or {}), dirs


def explicit_model_keys(argv: list[str]) -> set[str]:
    """The task arguments given on the command line (``--model.init_args.mc_samples 20`` ->
    ``mc_samples``); ``*`` when the whole model is given (``--model X``)."""
    keys: set[str] = set()
    for key in dotted_keys(argv, "--model"):
        path = key.split(".")
        if path[0] == "init_args" and len(path) > 1:
            path = path[1:]
        keys.add(path[0] if path[0] not in ("", "class_path", "dict_kwargs") else "*")
    return keys


def checkpoint_hparams(config: Any, ckpt_path: str, explicit: set[str]) -> dict[str, Any]:
    """The task arguments to take from the checkpoint: its saved hyperparameters (the task it was
    trained as) except those given on the command line, which apply over them."""
    model = config.get("model")
    if "*" in explicit or model is None or not hasattr(model, "get") or model.get("init_args") is None:
        return {}
    # Read through the trust check: a resolved `last`/`auto` checkpoint never passed --ckpt_path's check.
    hparams = dict(trusted_hyperparameters(str(ckpt_path), recipe_class_paths(config)))
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if class_path and not same_class(class_path, str(model.get("class_path"))):
        fail(f"--ckpt_path {ckpt_path} holds a {class_path}, but the recipe builds a {model.get('class_path')}")
    return {k: v for k, v in hparams.items() if k in model["init_args"] and k not in explicit}


def same_class(a: str, b: str) -> bool:
    """Whether two class paths name one class (``regkit.tasks.GAN`` and ``regkit.tasks.gan.GAN``)."""
    import importlib

    def load(path: str) -> Any:
        module, _, name = path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            return path

    return a == b or load(a) is load(b)
