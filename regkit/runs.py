"""A run is a folder: ``<root>/<name>/<run id>/`` holds everything one ``regkit`` command writes.

One rule for every task, logger and callback::

    runs/mlp_dropout/20261127-031502-4f9a1c/
        config.yaml          the resolved recipe (LightningCLI's SaveConfigCallback)
        checkpoints/         last.ckpt (always the latest state) and the best checkpoint(s)
        metrics.csv          every logged value, one row per step / epoch (CSVLogger)
        hparams.yaml         the task's hyperparameters (CSVLogger)
        curves.png           loss and the task's metric per epoch (written when fit ends)
        predictions.pt       what ``regkit predict`` returned
        wandb/               the W&B run (offline unless you are logged in)
        samples/, attention_maps/   pictures from callbacks

* ``root`` is the first logger's ``save_dir`` (``runs`` by default), ``name`` is the recipe file's
  stem (or the logger's ``name``, or the task's class), ``run id`` is the start time plus random
  hex, unique even for two runs started in the same second; it is also the W&B run id.
* ``--run_dir PATH`` puts the run in PATH instead.
* ``--ckpt_path last`` continues the latest run of the recipe (the most recently written
  ``<root>/<name>/*/checkpoints/last.ckpt``) in its own folder and W&B run; ``--ckpt_path auto``
  does the same when there is one and starts a new run otherwise.
* ``validate`` / ``test`` / ``predict`` of a checkpoint inside a run write into
  ``<that run>/<command>-<id>/``; otherwise into a new run folder.

Under DDP the launching process decides and passes the folder to the processes it starts (the
``REGKIT_RUN`` environment variable), so all ranks write into the same run. Processes started
by an outside launcher (torchrun, srun) cannot agree on a random id: give them ``--run_dir``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Optional

ENV = "REGKIT_RUN"
DEFAULT_ROOT = "runs"


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sortable by start time, unique by 24 random bits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def latest_checkpoint(root: str | Path, name: str) -> Optional[Path]:
    """The most recently written ``<root>/<name>/*/checkpoints/last.ckpt``, or None."""
    found = [p for p in Path(root, name).glob("*/checkpoints/last.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_of_checkpoint(ckpt_path: str | Path) -> Optional[Path]:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), or None."""
    path = Path(ckpt_path).resolve()
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def wandb_id(run_dir: str | Path) -> str:
    """The W&B run id of a run folder: the one its ``wandb/`` already holds (a resumed run keeps
    it), else the folder's name when regkit named it, else a new id."""
    previous = sorted(Path(run_dir, "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    for folder in reversed(previous):  # wandb/offline-run-20261127_031502-<id>
        match = re.fullmatch(r"(?:offline-)?run-\d{8}_\d{6}-(.+)", folder.name)
        if match:
            return match.group(1)
    name = Path(run_dir).name
    if re.fullmatch(r"(\w+-)?\d{8}-\d{6}-[0-9a-f]{6}", name):
        return name
    return new_run_id()


def inherited() -> Optional[dict[str, Any]]:
    """The run the launching process chose, in a process it started for DDP (local rank > 0)."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and ENV in os.environ:
        return json.loads(os.environ[ENV])
    return None


def share(run: dict[str, Any]) -> None:
    """Pass the chosen run to the DDP processes this one will start."""
    os.environ[ENV] = json.dumps(run)


def first_logger(config: Any) -> Any:
    logger = config.get("trainer", {}).get("logger")
    if isinstance(logger, list):
        return logger[0] if logger else None
    return logger


def init_args(logger: Any) -> Any:
    if logger is None or isinstance(logger, bool) or not hasattr(logger, "get"):
        return None
    return logger.get("init_args")


def run_root(config: Any) -> str:
    """The first logger's ``save_dir``, else ``runs``."""
    args = init_args(first_logger(config))
    save_dir = args.get("save_dir") if args is not None else None
    return str(save_dir) if save_dir else DEFAULT_ROOT


def run_name(config: Any, snake_case: Any) -> str:
    """The recipe file's stem; else the logger's ``name``; else the task class in snake case."""
    configs = config.get("config") or []
    if configs:
        return Path(str(configs[-1])).stem
    args = init_args(first_logger(config))
    if args is not None and args.get("name"):
        return str(args.get("name"))
    model = config.get("model")
    class_path = model.get("class_path", "") if hasattr(model, "get") else ""
    return snake_case(class_path.rsplit(".", 1)[-1]) if class_path else "regkit"


def run_dir(trainer: Any) -> Path:
    """The folder of the trainer's run (the CLI sets ``default_root_dir`` to it)."""
    return Path(trainer.default_root_dir)
