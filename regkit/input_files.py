"""Files a user hands to regkit, checked for being what they claim before anything runs.

* Recipes are YAML read with jsonargparse's safe loader, plus one rule: a key given twice in
  the same mapping is an error (plain YAML keeps the last one silently).
* ``--ckpt_path`` must be a file that ``torch.load(weights_only=True)`` reads as a Lightning
  checkpoint, and the class paths in its hyperparameters may only name regkit's classes or those of
  an installed or ``--plugins`` regkit plugin: a checkpoint is data, so it must not choose code to
  import (:func:`check_checkpoint`, before anything from it is imported).
* ``--plugins`` targets: a path that does not exist, or a module that fails to import, is named.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
from pathlib import Path
from typing import Any, Iterator

from regkit.validation import BadInput, describe

YAML_MODE = "regkit_yaml"


# ---------------------------------------------------------------------------------------------
# YAML


def _duplicate_keys(node: Any, path: str = "") -> Iterator[tuple[str, int]]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key = f"{path}.{name}" if path else str(name)
            if name is not None and name in seen:
                yield key, key_node.start_mark.line + 1
            seen.add(name)
            yield from _duplicate_keys(value_node, key)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}.{i}" if path else str(i))


def load_yaml(text: str) -> Any:
    """jsonargparse's YAML loader (safe), refusing a key given twice in one mapping."""
    import yaml
    from jsonargparse import get_loader

    if isinstance(text, str) and ":" in text:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        for key, line in _duplicate_keys(node):
            raise yaml.YAMLError(f"duplicate key {key} (line {line}): each key may appear only once")
    return get_loader("yaml")(text)


def install_yaml_loader() -> str:
    """Register :func:`load_yaml` as the parser mode ``regkit_yaml``; returns the mode's name."""
    import yaml
    from jsonargparse import set_loader

    set_loader(YAML_MODE, load_yaml, exceptions=(yaml.YAMLError,))
    return YAML_MODE


def check_recipe_files(argv: list[str]) -> None:
    """Each ``--config FILE`` exists and is UTF-8 text holding a YAML mapping; the error names the file."""
    import yaml

    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        if path.lstrip().startswith(("{", "[")) or "\n" in path:
            continue  # an inline recipe, which jsonargparse checks
        file = Path(path)
        if not file.is_file():
            what = "is a directory, not a recipe file" if file.is_dir() else "no such file"
            raise BadInput(what, f"--config {path}")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInput("is not a YAML recipe (not UTF-8 text)", f"--config {path}") from None
        if "\x00" in text:
            raise BadInput("is not a YAML recipe (binary data)", f"--config {path}")
        try:
            value = load_yaml(text)
        except yaml.YAMLError as err:
            raise BadInput(f"is not valid YAML: {' '.join(str(err).split())}", f"--config {path}") from None
        if value is not None and not isinstance(value, dict):
            raise BadInput(
                f"is not a recipe: it holds a YAML {type(value).__name__}, not a mapping of keys "
                "(trainer:, model:, data:)",
                f"--config {path}",
            )


# ---------------------------------------------------------------------------------------------
# Checkpoints

# Values of --ckpt_path that Lightning (or regkit) resolves itself instead of naming a file.
CKPT_KEYWORDS = ("last", "best", "hpc", "auto", "registry")
# What Lightning itself stores under ``_instantiator`` when the CLI saved the checkpoint.
TRUSTED_INSTANTIATORS = ("lightning.pytorch.cli.instantiate_module",)


def trusted_modules() -> set[str]:
    """Top-level modules whose classes a checkpoint may name: regkit, every installed regkit plugin
    (from entry-point metadata, nothing imported) and every module that registered a component
    (this includes ``--plugins`` files and modules)."""
    from regkit import registry

    modules = {"regkit"}
    for ep in importlib.metadata.entry_points(group="regkit.plugins"):
        modules.add(ep.value.split(":")[0].split(".")[0])
    for entry in registry.entries():
        modules.add(entry.module.split(".")[0])
    return modules


def _class_paths(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k in ("_class_path", "class_path", "_instantiator") and isinstance(v, str):
                yield sub, v
            else:
                yield from _class_paths(v, sub)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _class_paths(v, f"{key}.{i}" if key else str(i))


def check_trusted_hparams(hparams: Any, where: str) -> None:
    """Every class path in checkpoint hyperparameters names a regkit or regkit-plugin class."""
    trusted = None
    for key, path in _class_paths(hparams):
        if key.endswith("_instantiator") and path in TRUSTED_INSTANTIATORS:
            continue
        if trusted is None:
            trusted = trusted_modules()
        if path.split(".")[0] not in trusted:
            raise BadInput(
                f"hyperparameter {key} names {path!r}, which is not a class of regkit or of an installed "
                "regkit plugin; a checkpoint is data and may not choose code to import (load it only with "
                "a recipe you trust: --config with --model.class_path set)",
                where,
            )


def is_ckpt_keyword(value: str) -> bool:
    return value in CKPT_KEYWORDS or value.startswith("registry:")


def check_checkpoint(ckpt_path: Any) -> None:
    """``--ckpt_path`` names a Lightning checkpoint that loads safely and names only trusted classes.

    Raises:
        BadInput: with key ``ckpt_path`` and the file in the message.
    """
    if not isinstance(ckpt_path, (str, os.PathLike)) or is_ckpt_keyword(str(ckpt_path)):
        return
    trusted_hyperparameters(str(ckpt_path))


def trusted_hyperparameters(ckpt_path: str) -> dict[str, Any]:
    """The task hyperparameters of a checkpoint after the checks of :func:`check_checkpoint` (safe
    load, a state_dict, only trusted class paths), read once per file version."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise BadInput(f"{str(ckpt_path)!r}: {'is a directory' if path.is_dir() else 'no such file'}", "ckpt_path")
    stat = path.stat()
    return dict(_read_trusted(str(ckpt_path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _read_trusted(ckpt_path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    import torch

    path = Path(ckpt_path)
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # an old (non-zip) checkpoint cannot be memory-mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BadInput(
            f"{str(ckpt_path)!r} is not a PyTorch checkpoint that loads safely (weights_only): {describe(err)}",
            "ckpt_path",
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise BadInput(f"{str(ckpt_path)!r} is not a Lightning checkpoint (it has no state_dict)", "ckpt_path")
    for field in ("hyper_parameters", "datamodule_hyper_parameters"):
        check_trusted_hparams(ckpt.get(field) or {}, f"ckpt_path {str(ckpt_path)!r}")
    return dict(ckpt.get("hyper_parameters") or {})


# ---------------------------------------------------------------------------------------------
# --plugins


def looks_like_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target or target.startswith(".")


def check_plugin_target(target: str) -> None:
    """A ``--plugins`` value that looks like a path (``x.py``, ``dir/``, ``./x``) must be a file."""
    if not looks_like_path(target):
        return
    path = Path(target)
    if not path.exists():
        raise BadInput("no such file or directory", f"--plugins {target}")
    if path.is_dir():
        raise BadInput("is a directory; --plugins takes a .py file or an importable module name", f"--plugins {target}")


def load_plugin(target: str) -> None:
    """Register the components of one ``--plugins`` target; any failure names the target."""
    from regkit import registry

    check_plugin_target(target)
    try:
        registry.load_module(os.path.abspath(target) if os.path.exists(target) else target)
    except ModuleNotFoundError as err:
        if not looks_like_path(target) and err.name == target.split(".")[0]:
            raise BadInput(
                "no module of that name is installed, and it is not a file (a local file ends in .py)",
                f"--plugins {target}",
            ) from None
        raise BadInput(f"failed to import: {describe(err)}", f"--plugins {target}") from err
    except Exception as err:
        raise BadInput(f"failed to import: {describe(err)}", f"--plugins {target}") from err
